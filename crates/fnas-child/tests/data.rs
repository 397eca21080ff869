//! IDX loading (real Fashion-MNIST files and corrupt copies) and proxy-task splits.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fnas_child::idx::{self, DataError, ImageSet, IMAGES_MAGIC, LABELS_MAGIC};
use fnas_child::task::{ProxyTask, TaskError};

/// The installed Fashion-MNIST directory; fails (never skips) when the files are absent.
fn fmnist_dir() -> PathBuf {
    let dir = PathBuf::from(idx::DEFAULT_DATA_DIR);
    assert!(
        dir.join("train-images-idx3-ubyte.gz").is_file(),
        "Fashion-MNIST missing in {}: run scripts/setup.sh (apt-get install -y dataset-fashion-mnist) before the tests",
        dir.display()
    );
    dir
}

/// The real train set, loaded once per test binary.
fn train_set() -> &'static ImageSet {
    static S: OnceLock<ImageSet> = OnceLock::new();
    S.get_or_init(|| idx::load_split(&fmnist_dir(), "train").unwrap())
}

/// The real test set, loaded once per test binary.
fn test_set() -> &'static ImageSet {
    static S: OnceLock<ImageSet> = OnceLock::new();
    S.get_or_init(|| idx::load_split(&fmnist_dir(), "t10k").unwrap())
}

fn idx_bytes(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Writes the first `n` real test images and labels as a `t10k` split into `dir`.
fn write_small_split(dir: &Path, n: usize, compress: bool) -> (Vec<u8>, Vec<u8>) {
    let set = test_set();
    let pixels = set.pixels[..n * 784].to_vec();
    let labels = set.labels[..n].to_vec();
    let images = idx_bytes(IMAGES_MAGIC, &[n as u32, 28, 28], &pixels);
    let labs = idx_bytes(LABELS_MAGIC, &[n as u32], &labels);
    if compress {
        std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), gz(&images)).unwrap();
        std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), gz(&labs)).unwrap();
    } else {
        std::fs::write(dir.join("t10k-images-idx3-ubyte"), &images).unwrap();
        std::fs::write(dir.join("t10k-labels-idx1-ubyte"), &labs).unwrap();
    }
    (pixels, labels)
}

#[test]
fn real_fashion_mnist_files_load() {
    let train = train_set();
    assert_eq!((train.n, train.rows, train.cols), (60_000, 28, 28));
    assert_eq!(train.pixels.len(), 60_000 * 784);
    assert_eq!(&train.labels[..10], &[9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    assert_eq!(
        train.image(0).iter().map(|&p| p as u32).sum::<u32>(),
        76_247
    );
    let test = test_set();
    assert_eq!((test.n, test.rows, test.cols), (10_000, 28, 28));
    assert_eq!(&test.labels[..10], &[9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    assert_eq!(test.image(0).iter().map(|&p| p as u32).sum::<u32>(), 33_456);
    for set in [train, test] {
        let mut counts = [0usize; 10];
        set.labels.iter().for_each(|&l| counts[l as usize] += 1);
        assert!(counts.iter().all(|&c| c == set.n / 10), "{counts:?}");
    }
}

#[test]
fn gzip_and_plain_files_give_the_same_split() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let (pixels, labels) = write_small_split(a.path(), 20, true);
    write_small_split(b.path(), 20, false);
    let from_gz = idx::load_split(a.path(), "t10k").unwrap();
    let from_plain = idx::load_split(b.path(), "t10k").unwrap();
    assert_eq!(from_gz, from_plain);
    assert_eq!(from_gz.pixels, pixels);
    assert_eq!(from_gz.labels, labels);
    assert_eq!(from_gz.n, 20);
}

fn expect_err(dir: &Path, file_in_message: &str) -> DataError {
    let e = idx::load_split(dir, "t10k").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains(file_in_message),
        "message `{msg}` does not name {file_in_message}"
    );
    assert!(!msg.contains('\n'), "multi-line message `{msg}`");
    e
}

#[test]
fn truncated_gzip_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    write_small_split(d.path(), 50, true);
    let p = d.path().join("t10k-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = expect_err(d.path(), "t10k-images-idx3-ubyte.gz");
    assert!(matches!(e, DataError::Gzip { .. }), "{e:?}");
}

#[test]
fn bad_magic_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    write_small_split(d.path(), 5, true);
    // A labels file where the images file should be.
    let labels = std::fs::read(d.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    std::fs::write(d.path().join("t10k-images-idx3-ubyte.gz"), labels).unwrap();
    let e = expect_err(d.path(), "t10k-images-idx3-ubyte.gz");
    assert!(
        matches!(
            e,
            DataError::BadMagic {
                expected: 0x803,
                found: 0x801,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("0x00000801"), "{e}");
}

#[test]
fn short_body_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    let (pixels, _) = write_small_split(d.path(), 5, false);
    // Header declares 5 images, 4.5 follow.
    let bytes = idx_bytes(IMAGES_MAGIC, &[5, 28, 28], &pixels[..4 * 784 + 392]);
    std::fs::write(d.path().join("t10k-images-idx3-ubyte"), bytes).unwrap();
    let e = expect_err(d.path(), "t10k-images-idx3-ubyte");
    assert!(
        matches!(
            e,
            DataError::Truncated {
                declared: 5,
                expected: 3920,
                found: 3528,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn long_body_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    write_small_split(d.path(), 5, false);
    let bytes = idx_bytes(LABELS_MAGIC, &[5], &[1, 2, 3, 4, 5, 6, 7]);
    std::fs::write(d.path().join("t10k-labels-idx1-ubyte"), bytes).unwrap();
    let e = expect_err(d.path(), "t10k-labels-idx1-ubyte");
    assert!(
        matches!(e, DataError::TrailingData { extra: 2, .. }),
        "{e:?}"
    );
}

#[test]
fn label_image_count_mismatch_is_rejected() {
    let d = tempfile::tempdir().unwrap();
    let (_, labels) = write_small_split(d.path(), 20, true);
    let short = idx_bytes(LABELS_MAGIC, &[19], &labels[..19]);
    std::fs::write(d.path().join("t10k-labels-idx1-ubyte.gz"), gz(&short)).unwrap();
    let e = expect_err(d.path(), "t10k-labels-idx1-ubyte.gz");
    assert!(
        matches!(
            e,
            DataError::CountMismatch {
                images: 20,
                labels: 19,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("t10k-images-idx3-ubyte.gz"), "{e}");
}

#[test]
fn missing_file_names_directory_and_remedy() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().display().to_string();
    let e = expect_err(d.path(), &dir);
    assert!(matches!(e, DataError::MissingFile { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("t10k-images-idx3-ubyte.gz"), "{msg}");
    assert!(msg.contains("dataset-fashion-mnist"), "{msg}");
    assert!(msg.contains("--data-dir"), "{msg}");
    // Images present, labels absent.
    write_small_split(d.path(), 3, true);
    std::fs::remove_file(d.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let e = expect_err(d.path(), "t10k-labels-idx1-ubyte.gz");
    assert!(matches!(e, DataError::MissingFile { .. }), "{e:?}");
}

#[test]
fn unknown_split_is_rejected() {
    let e = idx::load_split(&fmnist_dir(), "validation").unwrap_err();
    assert!(matches!(e, DataError::UnknownSplit { .. }), "{e:?}");
}

fn tiny() -> ProxyTask {
    ProxyTask::by_name_or_path("fashion-mnist-tiny").unwrap()
}

#[test]
fn splits_are_disjoint_sized_and_deterministic() {
    let task = tiny();
    let dir = fmnist_dir();
    let a = task.materialise_from(train_set(), &dir).unwrap();
    let b = task.materialise().unwrap();
    assert_eq!(a.train.x, b.train.x);
    assert_eq!(a.train.y, b.train.y);
    assert_eq!(a.val_indices, b.val_indices);
    assert_eq!((a.train.n, a.val.n), (task.train_images, task.val_images));
    assert_eq!(
        (a.train.height, a.train.width, a.train.channels),
        (14, 14, 1)
    );
    assert_eq!(a.train.x.len(), a.train.n * 196);
    assert_eq!(a.classes, 10);
    let train: HashSet<_> = a.train_indices.iter().collect();
    let val: HashSet<_> = a.val_indices.iter().collect();
    assert_eq!(train.len(), task.train_images);
    assert_eq!(val.len(), task.val_images);
    assert!(train.is_disjoint(&val));
    // Labels follow the indices into the original train set.
    for (k, &i) in a.train_indices.iter().enumerate() {
        assert_eq!(a.train.y[k], train_set().labels[i]);
    }
    // Another seed draws other images.
    let mut other = task.clone();
    other.seed = 1;
    let c = other.materialise_from(train_set(), &dir).unwrap();
    assert_ne!(c.train_indices, a.train_indices);
}

#[test]
fn normalisation_and_resize_use_the_task_recipe() {
    let mut task = tiny();
    task.resolution = None;
    let full = task.materialise_from(train_set(), &fmnist_dir()).unwrap();
    assert_eq!((full.train.height, full.train.width), (28, 28));
    let i = full.train_indices[0];
    let raw = train_set().image(i);
    for (k, &p) in raw.iter().enumerate().step_by(37) {
        let want = (p as f32 / 255.0 - 0.2860) / 0.3530;
        assert!((full.train.x[k] - want).abs() < 1e-6);
    }
    // Across many images the normalised pixels have mean ~0 and std ~1.
    let x = &full.train.x;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / x.len() as f64;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / x.len() as f64;
    assert!(
        mean.abs() < 0.05 && (var.sqrt() - 1.0).abs() < 0.05,
        "{mean} {var}"
    );
    // 14x14 bilinear is the 2x2 mean of the same image.
    let half = tiny().materialise_from(train_set(), &fmnist_dir()).unwrap();
    assert_eq!(half.train_indices[0], i);
    let img = half.train.image(0);
    let want = raw[0..2]
        .iter()
        .chain(&raw[28..30])
        .map(|&p| p as f32)
        .sum::<f32>()
        / 4.0;
    assert!((img[0] - (want / 255.0 - 0.2860) / 0.3530).abs() < 1e-5);
}

#[test]
fn class_subsets_are_remapped_in_the_given_order() {
    let mut task = tiny();
    task.classes = Some(vec![9, 0, 3]);
    let d = task.materialise_from(train_set(), &fmnist_dir()).unwrap();
    assert_eq!(d.classes, 3);
    assert_eq!(d.class_map, vec![9, 0, 3]);
    for (split, indices) in [(&d.train, &d.train_indices), (&d.val, &d.val_indices)] {
        assert!(split.y.iter().all(|&y| y < 3));
        for (k, &i) in indices.iter().enumerate() {
            assert_eq!(d.class_map[split.y[k] as usize], train_set().labels[i]);
        }
        let seen: HashSet<_> = split.y.iter().collect();
        assert_eq!(seen.len(), 3);
    }
    let test = d.test().unwrap();
    assert_eq!(test.n, 3000);
    assert_eq!((test.height, test.width), (14, 14));
    assert_eq!(test.y[0], 0); // the first test image is an ankle boot (9) -> 0
}

#[test]
fn test_set_is_loaded_only_on_request_and_whole() {
    let d = tiny().materialise_from(train_set(), &fmnist_dir()).unwrap();
    let t = d.test().unwrap();
    assert_eq!(t.n, 10_000);
    assert_eq!(&t.y[..4], &[9, 2, 1, 1]);
    assert!(std::ptr::eq(t, d.test().unwrap()), "cached");
}

#[test]
fn proxy_and_long_share_validation_and_nest_training() {
    let dir = fmnist_dir();
    let proxy = ProxyTask::by_name_or_path("fashion-mnist").unwrap();
    let long = ProxyTask::by_name_or_path("fashion-mnist-long").unwrap();
    let p = proxy.materialise_from(train_set(), &dir).unwrap();
    let l = long.materialise_from(train_set(), &dir).unwrap();
    assert_eq!(p.val_indices, l.val_indices);
    let lt: HashSet<_> = l.train_indices.iter().collect();
    assert!(p.train_indices.iter().all(|i| lt.contains(i)));
    let full = ProxyTask::by_name_or_path("fashion-mnist-full").unwrap();
    assert_eq!(full.train_images + full.val_images, 60_000);
}

#[test]
fn impossible_requests_are_data_errors() {
    let mut task = tiny();
    task.train_images = 59_500;
    task.val_images = 1_000;
    let e = task
        .materialise_from(train_set(), &fmnist_dir())
        .unwrap_err();
    assert!(
        matches!(
            e,
            DataError::NotEnoughImages {
                requested: 60_500,
                available: 60_000,
                ..
            }
        ),
        "{e:?}"
    );
    let mut task = tiny();
    task.classes = Some(vec![1, 42]);
    let e = task
        .materialise_from(train_set(), &fmnist_dir())
        .unwrap_err();
    assert!(
        matches!(e, DataError::MissingClass { class: 42, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("fashion-mnist-tiny"));
}

const ONE_TASK: &str = r#"
name = "mine"
train_images = 100
val_images = 50
seed = 3
epochs = 1
batch_size = 10
optimizer = { kind = "adam" }
lr = 0.001
data_dir = "idx-data"
"#;

#[test]
fn task_files_parse_with_defaults_and_relative_data_dir() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("mine.toml");
    std::fs::write(&p, ONE_TASK).unwrap();
    let t = ProxyTask::by_name_or_path(p.to_str().unwrap()).unwrap();
    assert_eq!(t.name, "mine");
    assert_eq!(t.data_dir(), d.path().join("idx-data"));
    assert_eq!(t.normalize.mean, 0.2860);
    assert!(t.label_smoothing.is_none());
    // Several tasks: pick with #NAME.
    let two = format!(
        "[[task]]\n{}\n[[task]]\n{}",
        ONE_TASK,
        ONE_TASK.replace("\"mine\"", "\"other\"")
    );
    let p2 = d.path().join("two.toml");
    std::fs::write(&p2, two).unwrap();
    let e = ProxyTask::by_name_or_path(p2.to_str().unwrap()).unwrap_err();
    assert!(matches!(e, TaskError::Selection { .. }), "{e:?}");
    assert!(e.to_string().contains("#NAME"), "{e}");
    let o = ProxyTask::by_name_or_path(&format!("{}#other", p2.display())).unwrap();
    assert_eq!(o.name, "other");
}

#[test]
fn task_errors_name_file_field_and_expectation() {
    let parse = |text: &str| ProxyTask::parse(text, "my.toml").unwrap_err();
    let e = parse(&format!("{ONE_TASK}\nepoch = 3\n"));
    assert!(matches!(e, TaskError::Parse { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with("my.toml: line 12"), "{msg}");
    assert!(msg.contains("epoch"), "{msg}");
    let e = parse(&ONE_TASK.replace("epochs = 1", "epochs = 0"));
    assert_eq!(
        e.to_string(),
        "my.toml: task `mine`: `epochs` must be between 1 and 10000 (found 0)"
    );
    let e = parse(&ONE_TASK.replace("lr = 0.001", "lr = -1.0"));
    assert!(
        matches!(e, TaskError::Invalid { ref field, .. } if field == "lr"),
        "{e:?}"
    );
    let e = parse(&ONE_TASK.replace("kind = \"adam\"", "kind = \"rmsprop\""));
    assert!(e.to_string().contains("rmsprop"), "{e}");
    let e = parse(&ONE_TASK.replace("kind = \"adam\"", "kind = \"sgd\", nesterov = 1"));
    assert!(matches!(e, TaskError::Parse { .. }), "{e:?}");
    let e = parse(&format!("{ONE_TASK}\nclasses = [1, 1]\n"));
    assert!(
        matches!(e, TaskError::Invalid { ref field, .. } if field == "classes"),
        "{e:?}"
    );
    let e = ProxyTask::by_name_or_path("fashion-mnst").unwrap_err();
    assert!(matches!(e, TaskError::Unknown { .. }), "{e:?}");
    assert!(e.to_string().contains("fashion-mnist-tiny"), "{e}");
    let e = ProxyTask::by_name_or_path("/no/such/task.toml").unwrap_err();
    assert!(matches!(e, TaskError::Unreadable { .. }), "{e:?}");
}
