//! Image-folder tasks on real Fashion-MNIST images written as PNG files: pixels and
//! labels against the IDX source, RGB input, the cache, a child trained end to end, and
//! every bad folder's one-line error.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use fnas_child::folder::{self, FolderOptions};
use fnas_child::idx::{self, DataError, ImageSet};
use fnas_child::plan::median_arch;
use fnas_child::task::{Normalize, ProxyTask, Resize, TaskError};
use fnas_child::{TrainingEvaluator, TrainingSettings};
use fnas_core::SearchSpace;

/// The real Fashion-MNIST test set (10,000 images), loaded once per test binary.
fn source() -> &'static ImageSet {
    static S: OnceLock<ImageSet> = OnceLock::new();
    S.get_or_init(|| {
        let dir = PathBuf::from(idx::DEFAULT_DATA_DIR);
        idx::load_split(&dir, "t10k").unwrap_or_else(|e| {
            panic!("{e}: run scripts/setup.sh (apt-get install -y dataset-fashion-mnist)")
        })
    })
}

/// Class folder names of three Fashion-MNIST labels, chosen so that the sorted names are
/// not in label order: label 9 (ankle boot) sorts first.
const CLASSES: [(u8, &str); 3] = [(0, "c-tshirt"), (1, "b-trouser"), (9, "a-boot")];

/// How a written image's pixels are made from the gray source.
#[derive(Clone, Copy)]
enum Color {
    Gray,
    /// R = p, G = p / 2, B = 255 - p.
    Tint,
}

/// Writes `per_class` images of each of `CLASSES` into `root/split/<class>/`, skipping the
/// first `skip` of each label in the source; returns the source indices per class folder
/// in the folder's file order.
fn write_split(
    root: &Path,
    split: &str,
    per_class: usize,
    skip: usize,
    color: Color,
) -> Vec<(String, Vec<usize>)> {
    let set = source();
    let mut out = Vec::new();
    for (label, name) in CLASSES {
        let dir = root.join(split).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let picked: Vec<usize> = (0..set.n)
            .filter(|&i| set.labels[i] == label)
            .skip(skip)
            .take(per_class)
            .collect();
        for (k, &i) in picked.iter().enumerate() {
            let px = set.image(i);
            let path = dir.join(format!("{k:04}.png"));
            match color {
                Color::Gray => image::GrayImage::from_raw(28, 28, px.to_vec())
                    .unwrap()
                    .save(&path)
                    .unwrap(),
                Color::Tint => {
                    let rgb: Vec<u8> = px.iter().flat_map(|&p| [p, p / 2, 255 - p]).collect();
                    image::RgbImage::from_raw(28, 28, rgb)
                        .unwrap()
                        .save(&path)
                        .unwrap()
                }
            }
        }
        out.push((name.to_string(), picked));
    }
    out.sort();
    out
}

/// A small task on `root`: `train` / `val` images, no resize, pixels scaled to [0, 1].
fn task(root: &Path, train: usize, val: usize) -> ProxyTask {
    let mut t = ProxyTask::by_name_or_path("fashion-mnist-tiny").unwrap();
    t.name = "folder".into();
    t.images = Some(root.to_path_buf());
    t.train_images = train;
    t.val_images = val;
    t.batch_size = 16;
    t.resolution = None;
    t.normalize = Normalize {
        mean: 0.0,
        std: 1.0,
    };
    t
}

fn cache() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn err_of(r: Result<impl std::fmt::Debug, DataError>, names: &str) -> DataError {
    let e = r.unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(names), "`{msg}` does not name {names}");
    assert!(!msg.contains('\n'), "multi-line message `{msg}`");
    e
}

#[test]
fn gray_folder_matches_the_idx_pixels_and_sorted_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let written = write_split(tmp.path(), "train", 40, 0, Color::Gray);
    let c = cache();
    let data = task(tmp.path(), 60, 30)
        .materialise_cached(Some(c.path()))
        .unwrap();
    assert_eq!(data.class_names, ["a-boot", "b-trouser", "c-tshirt"]);
    assert_eq!(
        (data.classes, data.channels(), data.resolution()),
        (3, 1, 28)
    );
    assert_eq!(data.source_size, [28, 28]);
    // folder order: class folders sorted, files sorted; label = folder position
    let order: Vec<(usize, u8)> = written
        .iter()
        .enumerate()
        .flat_map(|(label, (_, idx))| idx.iter().map(move |&i| (i, label as u8)))
        .collect();
    let src = source();
    for (split, indices) in [
        (&data.train, &data.train_indices),
        (&data.val, &data.val_indices),
    ] {
        assert_eq!(split.n, indices.len());
        for (j, &k) in indices.iter().enumerate() {
            let (i, label) = order[k];
            assert_eq!(split.y[j], label);
            let want: Vec<f32> = src.image(i).iter().map(|&p| p as f32 / 255.0).collect();
            assert_eq!(split.image(j), &want[..], "image {j}");
        }
    }
    // the same draw as the IDX path on the same images in the same order
    let as_idx = ImageSet {
        pixels: order
            .iter()
            .flat_map(|&(i, _)| src.image(i).to_vec())
            .collect(),
        n: order.len(),
        channels: 1,
        rows: 28,
        cols: 28,
        labels: order.iter().map(|&(_, l)| l).collect(),
    };
    let mut idx_task = task(tmp.path(), 60, 30);
    idx_task.images = None;
    let idx_data = idx_task.materialise_from(&as_idx, tmp.path()).unwrap();
    assert_eq!(idx_data.train, data.train);
    assert_eq!(idx_data.val, data.val);
    assert_eq!(idx_data.train_indices, data.train_indices);
    assert_eq!(idx_data.class_names, ["0", "1", "2"]);
}

#[test]
fn rgb_folder_gives_three_channels_or_luma_and_trains_a_child() {
    let tmp = tempfile::tempdir().unwrap();
    let written = write_split(tmp.path(), "train", 48, 0, Color::Tint);
    let c = cache();
    let mut t = task(tmp.path(), 96, 48);
    t.resolution = Some(14);
    t.epochs = 1;
    let data = t.materialise_cached(Some(c.path())).unwrap();
    assert_eq!((data.channels(), data.resolution()), (3, 14));
    assert_eq!(data.train.image_len(), 3 * 14 * 14);
    // the planes are R, G, B: G is about half of R, B about 255 - R (after the resize)
    let img = data.train.image(0);
    let (r, g, b) = (&img[..196], &img[196..392], &img[392..]);
    for k in 0..196 {
        assert!((g[k] - r[k] / 2.0).abs() < 0.01, "{} {}", g[k], r[k]);
        assert!((b[k] - (1.0 - r[k])).abs() < 0.01, "{} {}", b[k], r[k]);
    }

    // channels = 1 converts with PIL's luma weights, at full resolution exactly
    let mut gray = task(tmp.path(), 96, 48);
    gray.channels = Some(1);
    let g = gray.materialise_cached(Some(c.path())).unwrap();
    assert_eq!(g.channels(), 1);
    // a training image of the first class folder (folder position k < 48)
    let j = (0..g.train.n)
        .find(|&j| g.train_indices[j] < 48)
        .expect("a first-class image among 96 of 144");
    let p = source().image(written[0].1[g.train_indices[j]]);
    for (x, &p) in g.train.image(j).iter().zip(p) {
        let (r, gg, b) = (p as u32, (p / 2) as u32, (255 - p) as u32);
        let l = ((r * 19595 + gg * 38470 + b * 7471 + 0x8000) >> 16) as f32 / 255.0;
        assert_eq!(*x, l);
    }

    // a real MNAS child trains on the RGB images end to end, with a 3-channel stem
    let space = SearchSpace::by_name_or_path("mnas-28").unwrap();
    let arch = median_arch(space.mnas_spec().unwrap());
    let settings = TrainingSettings {
        workers: 1,
        latency_runs: 1,
        latency_warmup: 0,
        ..TrainingSettings::default()
    };
    let eval = TrainingEvaluator::new(space, Arc::new(data), settings);
    let plan = eval.plan(&arch).unwrap();
    assert_eq!((plan.in_channels, plan.resolution), (3, 14));
    let out = eval.train_one(&arch, 0).unwrap();
    let acc = out.metrics.val_accuracy;
    assert!((0.0..=1.0).contains(&acc), "{acc}");
    assert_eq!(out.cost.images, 96);
}

#[test]
fn val_and_test_folders_are_used_and_checked() {
    let tmp = tempfile::tempdir().unwrap();
    write_split(tmp.path(), "train", 20, 0, Color::Gray);
    let val = write_split(tmp.path(), "val", 10, 20, Color::Gray);
    let c = cache();
    let data = task(tmp.path(), 40, 24)
        .materialise_cached(Some(c.path()))
        .unwrap();
    assert_eq!((data.train.n, data.val.n), (40, 24));
    // the validation images come from val/ (source images 20.. of each label)
    let src = source();
    let order: Vec<usize> = val.iter().flat_map(|(_, v)| v.clone()).collect();
    let k = data.val_indices[0];
    let want: Vec<f32> = src
        .image(order[k])
        .iter()
        .map(|&p| p as f32 / 255.0)
        .collect();
    assert_eq!(data.val.image(0), &want[..]);
    // more validation images than val/ holds
    let e = err_of(
        task(tmp.path(), 40, 31).materialise_cached(Some(c.path())),
        "val",
    );
    assert!(
        matches!(e, DataError::NotEnoughImages { available: 30, .. }),
        "{e:?}"
    );
    // test/ absent, then present
    let e = err_of(data.test(), "test");
    assert!(matches!(e, DataError::MissingFolder { .. }), "{e:?}");
    write_split(tmp.path(), "test", 5, 30, Color::Gray);
    let test = data.test().unwrap();
    assert_eq!((test.n, test.channels), (15, 1));
    // val/ with other classes
    std::fs::rename(tmp.path().join("val/a-boot"), tmp.path().join("val/boot")).unwrap();
    let e = err_of(
        task(tmp.path(), 40, 24).materialise_cached(Some(c.path())),
        "val",
    );
    assert!(matches!(e, DataError::ClassMismatch { .. }), "{e:?}");
}

#[test]
fn the_cache_is_read_and_a_damaged_one_rebuilt() {
    let tmp = tempfile::tempdir().unwrap();
    write_split(tmp.path(), "train", 20, 0, Color::Gray);
    let c = cache();
    let t = task(tmp.path(), 40, 20);
    let opts = FolderOptions {
        channels: None,
        resolution: None,
        resize: Resize::Bilinear,
    };
    let file = folder::cache_path(tmp.path(), "train", &opts, c.path()).unwrap();
    assert!(!file.exists());
    let first = t.materialise_cached(Some(c.path())).unwrap();
    assert!(file.is_file(), "no cache file {}", file.display());
    let written = std::fs::read(&file).unwrap();
    // never inside the user's folder
    assert!(!file.starts_with(tmp.path()));

    // a PNG replaced by garbage of the same size and time: the cache is read, not the file
    let png = tmp.path().join("train/a-boot/0000.png");
    let meta = std::fs::metadata(&png).unwrap();
    std::fs::write(&png, vec![0u8; meta.len() as usize]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&png)
        .unwrap()
        .set_modified(meta.modified().unwrap())
        .unwrap();
    let second = t.materialise_cached(Some(c.path())).unwrap();
    assert_eq!((&second.train, &second.val), (&first.train, &first.val));
    // ... and without a cache the garbage is found
    let e = err_of(t.materialise_cached(None), "0000.png");
    assert!(matches!(e, DataError::NotAnImage { .. }), "{e:?}");

    // a damaged cache is not trusted: here it can only be rebuilt from the files
    std::fs::write(&file, &written[..written.len() - 10]).unwrap();
    err_of(t.materialise_cached(Some(c.path())), "0000.png");
    // restore the image (new time: a new key); the damaged file of the old key stays unread
    write_split(tmp.path(), "train", 20, 0, Color::Gray);
    let third = t.materialise_cached(Some(c.path())).unwrap();
    assert_eq!((&third.train, &third.val), (&first.train, &first.val));
    // a damaged file of the current key is rebuilt in place
    let file = folder::cache_path(tmp.path(), "train", &opts, c.path()).unwrap();
    let good = std::fs::read(&file).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 0xff;
    std::fs::write(&file, &bad).unwrap();
    let fourth = t.materialise_cached(Some(c.path())).unwrap();
    assert_eq!(&fourth.train, &first.train);
    assert_eq!(std::fs::read(&file).unwrap(), good);
}

#[test]
fn sizes_are_checked_or_resized() {
    let tmp = tempfile::tempdir().unwrap();
    write_split(tmp.path(), "train", 10, 0, Color::Gray);
    let odd = tmp.path().join("train/b-trouser/0003.png");
    let small = image::imageops::resize(
        &image::open(&odd).unwrap().to_luma8(),
        20,
        16,
        image::imageops::FilterType::Triangle,
    );
    small.save(&odd).unwrap();
    let c = cache();
    let e = err_of(
        task(tmp.path(), 20, 10).materialise_cached(Some(c.path())),
        "0003.png",
    );
    assert!(e.to_string().contains("resolution"), "{e}");
    let mut t = task(tmp.path(), 20, 10);
    t.resolution = Some(12);
    let data = t.materialise_cached(Some(c.path())).unwrap();
    assert_eq!((data.resolution(), data.train.image_len()), (12, 144));
}

#[test]
fn bad_folders_are_one_line_errors_naming_the_place() {
    let c = cache();
    let load = |root: &Path| task(root, 4, 2).materialise_cached(Some(c.path()));

    let tmp = tempfile::tempdir().unwrap();
    let e = err_of(load(tmp.path()), "train");
    assert!(matches!(e, DataError::MissingFolder { .. }), "{e:?}");

    write_split(tmp.path(), "train", 3, 0, Color::Gray);
    // hidden files are skipped
    std::fs::write(tmp.path().join("train/a-boot/.DS_Store"), b"junk").unwrap();
    std::fs::write(tmp.path().join("train/.hidden"), b"junk").unwrap();
    assert_eq!(load(tmp.path()).unwrap().classes, 3);

    // an empty class folder
    std::fs::create_dir(tmp.path().join("train/d-empty")).unwrap();
    let e = err_of(load(tmp.path()), "d-empty");
    assert!(matches!(e, DataError::EmptyClass { .. }), "{e:?}");
    std::fs::remove_dir(tmp.path().join("train/d-empty")).unwrap();

    // a file of another kind, and a .png that is no image
    let notes = tmp.path().join("train/a-boot/notes.txt");
    std::fs::write(&notes, b"hello").unwrap();
    err_of(load(tmp.path()), "notes.txt");
    std::fs::remove_file(&notes).unwrap();
    let fake = tmp.path().join("train/a-boot/fake.png");
    std::fs::write(&fake, b"not a png at all").unwrap();
    let e = err_of(load(tmp.path()), "fake.png");
    assert!(matches!(e, DataError::NotAnImage { .. }), "{e:?}");
    std::fs::remove_file(&fake).unwrap();
    // a loose file among the class folders
    std::fs::write(tmp.path().join("train/labels.csv"), b"x").unwrap();
    err_of(load(tmp.path()), "labels.csv");
    std::fs::remove_file(tmp.path().join("train/labels.csv")).unwrap();

    // one class only
    let one = tempfile::tempdir().unwrap();
    write_split(one.path(), "train", 3, 0, Color::Gray);
    std::fs::remove_dir_all(one.path().join("train/a-boot")).unwrap();
    std::fs::remove_dir_all(one.path().join("train/b-trouser")).unwrap();
    let e = err_of(load(one.path()), "c-tshirt");
    assert!(matches!(e, DataError::OneClass { .. }), "{e:?}");

    // channels other than 1 or 3, and images with data_dir, are task errors
    let mut t = task(tmp.path(), 4, 2);
    t.batch_size = 2;
    t.channels = Some(2);
    let e = t.validate("t.toml").unwrap_err();
    assert!(e.to_string().contains("channels"), "{e}");
    let mut t = task(tmp.path(), 4, 2);
    t.batch_size = 2;
    t.data_dir = Some(tmp.path().to_path_buf());
    assert!(matches!(
        t.validate("t.toml"),
        Err(TaskError::Invalid { field, .. }) if field == "images"
    ));
}

#[test]
fn task_files_take_images_relative_to_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("mine.toml");
    std::fs::write(
        &file,
        r#"name = "mine"
images = "photos"
channels = 3
train_images = 10
val_images = 5
resolution = 32
seed = 1
epochs = 1
batch_size = 5
optimizer = { kind = "adam" }
lr = 0.001
normalize = { mean = 0.5, std = 0.25 }
"#,
    )
    .unwrap();
    let t = ProxyTask::by_name_or_path(file.to_str().unwrap()).unwrap();
    assert_eq!(t.images, Some(tmp.path().join("photos")));
    assert_eq!(t.channels, Some(3));
    assert_eq!(t.data_dir, None);
    // stored settings of an IDX task do not grow the new fields
    let idx = ProxyTask::by_name_or_path("fashion-mnist").unwrap();
    let json = serde_json::to_value(&idx).unwrap();
    assert!(json.get("images").is_none() && json.get("channels").is_none());
}
