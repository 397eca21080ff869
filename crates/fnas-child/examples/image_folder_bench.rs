//! What reading an image-folder task costs (issue 26), the timing half of
//! `scripts/image_folder_bench.sh`.
//!
//! Writes the 10,000 Fashion-MNIST test images (`t10k`, 28x28 gray) as PNG files into
//! `DIR/train/<class>/NNNN.png` (ten class folders named after the Fashion-MNIST labels),
//! then materialises the shipped `fashion-mnist` proxy recipe on that folder (4,500 train
//! and 5,000 validation images at 14x14, what every child of a search and every worker
//! process loads) three ways, each timed:
//!
//! - `first_read_s`: an empty cache: every PNG decoded (rayon over files), the cache file
//!   written;
//! - `cached_read_s`: the cache file read (what a resumed search or a worker pays), the
//!   median of `--rounds` reads;
//! - `idx_read_s`: the same recipe on the IDX files, for comparison (median).
//!
//! ```text
//! cargo run --release -p fnas-child --example image_folder_bench -- DIR [--rounds 5]
//! ```
//!
//! Prints one JSON line. `DIR` must not exist or be empty; the cache goes to
//! `DIR.cache` (removed first, so the first read is really the first).

use std::path::{Path, PathBuf};
use std::time::Instant;

use fnas_child::idx;
use fnas_child::task::ProxyTask;

const NAMES: [&str; 10] = [
    "tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot",
];

fn main() {
    if let Err(e) = run() {
        eprintln!("image_folder_bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(
        args.first()
            .ok_or("usage: image_folder_bench DIR [--rounds N]")?,
    );
    let rounds = match args.iter().position(|a| a == "--rounds") {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&r| r >= 1)
            .ok_or("--rounds needs a positive number")?,
        None => 5,
    };
    let src =
        idx::load_split(Path::new(idx::DEFAULT_DATA_DIR), "t10k").map_err(|e| e.to_string())?;
    let t = Instant::now();
    write_tree(&dir, &src)?;
    let write_s = t.elapsed().as_secs_f64();

    let cache = PathBuf::from(format!("{}.cache", dir.display()));
    let _ = std::fs::remove_dir_all(&cache);
    let recipe = ProxyTask::by_name_or_path("fashion-mnist").map_err(|e| e.to_string())?;
    let mut task = recipe.clone();
    task.images = Some(dir.clone());
    task.data_dir = None;

    let t = Instant::now();
    let first = task
        .materialise_cached(Some(&cache))
        .map_err(|e| e.to_string())?;
    let first_read_s = t.elapsed().as_secs_f64();

    let median = |f: &dyn Fn() -> Result<(), String>| -> Result<f64, String> {
        let mut v = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            f()?;
            v.push(t.elapsed().as_secs_f64());
        }
        v.sort_by(f64::total_cmp);
        Ok(v[v.len() / 2])
    };
    let cached_read_s = median(&|| {
        let again = task
            .materialise_cached(Some(&cache))
            .map_err(|e| e.to_string())?;
        if again.train != first.train || again.val != first.val {
            return Err("the cached read differs from the first read".into());
        }
        Ok(())
    })?;
    let idx_read_s = median(&|| recipe.materialise().map(|_| ()).map_err(|e| e.to_string()))?;
    let cache_bytes: u64 = std::fs::read_dir(&cache)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "{{\"images\": {}, \"threads\": {}, \"write_pngs_s\": {write_s:.3}, \"first_read_s\": {first_read_s:.3}, \"cached_read_s\": {cached_read_s:.4}, \"idx_read_s\": {idx_read_s:.4}, \"cache_bytes\": {cache_bytes}, \"rounds\": {rounds}}}",
        src.n,
        rayon::current_num_threads()
    );
    Ok(())
}

/// The test set as PNG files, class folder by class folder.
fn write_tree(dir: &Path, src: &idx::ImageSet) -> Result<(), String> {
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!("{} is not empty", dir.display()));
    }
    for i in 0..src.n {
        let class = NAMES
            .get(src.labels[i] as usize)
            .ok_or("a label outside 0..10")?;
        let d = dir.join("train").join(class);
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        let img =
            image::GrayImage::from_raw(src.cols as u32, src.rows as u32, src.image(i).to_vec())
                .ok_or("image size")?;
        img.save(d.join(format!("{i:05}.png")))
            .map_err(|e| format!("{}: {e}", d.display()))?;
    }
    Ok(())
}
