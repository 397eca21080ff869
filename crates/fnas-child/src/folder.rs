//! Image folders: a user's own images as a proxy task's data, `ROOT/<split>/<class>/*.png`.
//!
//! Layout: `ROOT/train/<class>/` (required), `ROOT/val/<class>/` and `ROOT/test/<class>/`
//! (optional). The classes are the class folders' names sorted in byte order; label `i` is
//! the `i`-th name, and `val/` and `test/` must hold the same names as `train/`. Inside a
//! split folder every entry not starting with `.` must be a class folder, and inside a
//! class folder every such entry an image file ending in `.png`, `.jpg` or `.jpeg` (any
//! case); entries starting with `.` (`.DS_Store`, editors' swap files) are skipped. Images
//! are read in class order, then file-name order, so a split drawn with a seed is the same
//! on every machine holding the same files.
//!
//! Pixels are decoded once to the task's channels (1: gray, RGB converted with PIL's
//! `convert("L")` weights 0.299/0.587/0.114; 3: RGB, gray replicated; alpha dropped) and
//! resolution (resized with the task's [`Resize`], then rounded to `u8`), and kept in a
//! cache file (see [`default_cache_dir`]) keyed by every input of that decoding: a search
//! resumed later or its `fnas worker` processes read the cache, not 10,000 PNGs. A cache
//! file that is damaged or short is ignored with a warning on stderr and rebuilt.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use image::{ImageDecoder, ImageReader};
use rayon::prelude::*;

use crate::idx::{DataError, ImageSet};
use crate::task::{resize_bilinear, resize_nearest, Resize};

/// File extensions read as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Bumped whenever the decoding or the cache layout changes, so old cache files miss.
const CACHE_VERSION: &str = "fnas-image-cache v1";
const CACHE_MAGIC: &[u8; 8] = b"FNASIMG1";

/// How the images of a folder become pixels: the task's fields that decide them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolderOptions {
    /// 1 or 3; `None`: 3 if any training image is stored in a colour format, else 1.
    pub channels: Option<usize>,
    /// Square size every image is resized to; `None`: all must share one square size.
    pub resolution: Option<usize>,
    /// How images are resized.
    pub resize: Resize,
}

/// One split of an image folder, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderSet {
    /// Pixels at the task's channels and resolution, labels = class positions.
    pub set: ImageSet,
    /// The class folders' names, sorted (label `i` = `class_names[i]`).
    pub class_names: Vec<String>,
    /// Height and width of the first image as stored (before any resize).
    pub source_size: [usize; 2],
}

/// Where decoded folders are cached: `$FNAS_CACHE_DIR`, else `$XDG_CACHE_HOME/fnas/images`,
/// else `$HOME/.cache/fnas/images`; `None` (no cache) when none is set. Never inside the
/// user's image folder: it may be read-only or shared.
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("FNAS_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("fnas").join("images")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("fnas").join("images")))
}

/// One line, whatever a path contains.
fn show(path: &Path) -> String {
    path.display()
        .to_string()
        .split(['\n', '\r'])
        .collect::<Vec<_>>()
        .join(" ")
}

fn layout(path: &Path, detail: impl Into<String>) -> DataError {
    DataError::FolderLayout {
        path: show(path),
        detail: detail.into(),
    }
}

fn hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// The non-hidden entries of `dir`, sorted by name, with whether each is a folder.
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf, bool)>, DataError> {
    let unreadable = |e: std::io::Error| DataError::Unreadable {
        file: show(dir),
        reason: e.to_string(),
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let name = entry.file_name();
        if hidden(&name) {
            continue;
        }
        let path = entry.path();
        let Some(name) = name.to_str().map(str::to_string) else {
            return Err(layout(&path, "the name is not valid UTF-8; rename it"));
        };
        // follows symbolic links, so a linked class folder or image works
        let is_dir = path.is_dir();
        out.push((name, path, is_dir));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// An image file of the folder, with what the cache key needs.
struct ImageFile {
    path: PathBuf,
    label: u8,
    size: u64,
    mtime: (u64, u32),
}

/// Lists `root/split`: its class names and image files, checked as the module docs say.
fn list(root: &Path, split: &str) -> Result<(Vec<String>, Vec<ImageFile>), DataError> {
    let dir = root.join(split);
    if !dir.is_dir() {
        return Err(DataError::MissingFolder {
            folder: show(&dir),
            expected: format!("one sub-folder of images per class ({split}/<class>/*.png)"),
        });
    }
    let classes = entries(&dir)?;
    let mut names = Vec::new();
    let mut files = Vec::new();
    for (name, path, is_dir) in classes {
        if !is_dir {
            return Err(layout(
                &path,
                format!("expected only class folders in {}", show(&dir)),
            ));
        }
        if names.len() == 256 {
            return Err(layout(&dir, "more than 256 class folders"));
        }
        let label = names.len() as u8;
        let mut count = 0;
        for (file, fpath, is_dir) in entries(&path)? {
            let ext = Path::new(&file)
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if is_dir || !ext.is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str())) {
                return Err(layout(
                    &fpath,
                    "not an image file (expected .png, .jpg or .jpeg; names starting with `.` are skipped)",
                ));
            }
            let meta = std::fs::metadata(&fpath).map_err(|e| DataError::Unreadable {
                file: show(&fpath),
                reason: e.to_string(),
            })?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or((0, 0), |d| (d.as_secs(), d.subsec_nanos()));
            files.push(ImageFile {
                path: fpath,
                label,
                size: meta.len(),
                mtime,
            });
            count += 1;
        }
        if count == 0 {
            return Err(DataError::EmptyClass {
                folder: show(&path),
            });
        }
        names.push(name);
    }
    match names.len() {
        0 => Err(DataError::MissingFolder {
            folder: show(&dir.join("<class>")),
            expected: "class folders of images (none found)".to_string(),
        }),
        1 => Err(DataError::OneClass {
            folder: show(&dir),
            class: names[0].clone(),
        }),
        _ => Ok((names, files)),
    }
}

/// FNV-1a, 64 bits: a stable hash (std's hasher may change between Rust releases, which
/// would silently orphan every cache file).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Fnv {
        for &x in b {
            self.0 = (self.0 ^ x as u64).wrapping_mul(0x0100_0000_01b3);
        }
        self
    }
    fn num(&mut self, v: u64) -> &mut Fnv {
        self.bytes(&v.to_le_bytes())
    }
}

/// The cache key: the folder's canonical path, the split, every file's relative path,
/// size and modification time, and the decoding options.
fn cache_key(root: &Path, split: &str, files: &[ImageFile], opts: &FolderOptions) -> u64 {
    let canon = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let mut h = Fnv::new();
    h.bytes(CACHE_VERSION.as_bytes())
        .bytes(canon.as_os_str().as_encoded_bytes())
        .num(0)
        .bytes(split.as_bytes())
        .num(files.len() as u64);
    for f in files {
        let rel = f.path.strip_prefix(root).unwrap_or(&f.path);
        h.bytes(rel.as_os_str().as_encoded_bytes())
            .num(0)
            .num(f.size)
            .num(f.mtime.0)
            .num(f.mtime.1 as u64);
    }
    h.num(opts.channels.unwrap_or(0) as u64)
        .num(opts.resolution.unwrap_or(0) as u64)
        .num(match opts.resize {
            Resize::Bilinear => 0,
            Resize::Nearest => 1,
        });
    h.0
}

fn not_image(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::NotAnImage {
        file: show(path),
        reason: e
            .to_string()
            .split(['\n', '\r'])
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Width, height and whether the file is stored in a colour format, from its header.
fn header(path: &Path) -> Result<(usize, usize, bool), DataError> {
    let reader = ImageReader::open(path)
        .map_err(|e| DataError::Unreadable {
            file: show(path),
            reason: e.to_string(),
        })?
        .with_guessed_format()
        .map_err(|e| not_image(path, e))?;
    let decoder = reader.into_decoder().map_err(|e| not_image(path, e))?;
    let (w, h) = decoder.dimensions();
    Ok((w as usize, h as usize, decoder.color_type().has_color()))
}

/// PIL's `convert("L")`: `(299 R + 587 G + 114 B) / 1000` in 16-bit fixed point.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * 19595 + g as u32 * 38470 + b as u32 * 7471 + 0x8000) >> 16) as u8
}

/// Decodes one file to `channels` planes of `out x out` pixels.
fn decode(path: &Path, channels: usize, out: usize, resize: Resize) -> Result<Vec<u8>, DataError> {
    let img = ImageReader::open(path)
        .map_err(|e| DataError::Unreadable {
            file: show(path),
            reason: e.to_string(),
        })?
        .with_guessed_format()
        .map_err(|e| not_image(path, e))?
        .decode()
        .map_err(|e| not_image(path, e))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let planes: Vec<u8> = if channels == 1 {
        if img.color().has_color() {
            img.to_rgb8()
                .pixels()
                .map(|p| luma(p.0[0], p.0[1], p.0[2]))
                .collect()
        } else {
            img.to_luma8().into_raw()
        }
    } else {
        let rgb = img.to_rgb8().into_raw();
        (0..3)
            .flat_map(|c| rgb.iter().skip(c).step_by(3).copied().collect::<Vec<_>>())
            .collect()
    };
    if (h, w) == (out, out) {
        return Ok(planes);
    }
    let mut pixels = Vec::with_capacity(channels * out * out);
    let mut unit = vec![0f32; h * w];
    for plane in planes.chunks(h * w) {
        for (u, &p) in unit.iter_mut().zip(plane) {
            *u = p as f32;
        }
        let resized = match resize {
            Resize::Bilinear => resize_bilinear(&unit, h, w, out, out),
            Resize::Nearest => resize_nearest(&unit, h, w, out, out),
        };
        pixels.extend(resized.iter().map(|v| v.round().clamp(0.0, 255.0) as u8));
    }
    Ok(pixels)
}

/// Decodes every file (in parallel), checking sizes when no resolution is set.
fn decode_all(
    files: &[ImageFile],
    opts: &FolderOptions,
) -> Result<(ImageSet, [usize; 2]), DataError> {
    let headers = files
        .par_iter()
        .map(|f| header(&f.path))
        .collect::<Result<Vec<_>, _>>()?;
    let (w0, h0, _) = headers[0];
    let out = match opts.resolution {
        Some(r) => r,
        None => {
            if w0 != h0 {
                return Err(DataError::MixedSizes {
                    file: show(&files[0].path),
                    detail: format!("{w0}x{h0} pixels, not square"),
                });
            }
            if let Some((f, (w, h, _))) = files
                .iter()
                .zip(&headers)
                .find(|(_, (w, h, _))| (*w, *h) != (w0, h0))
            {
                return Err(DataError::MixedSizes {
                    file: show(&f.path),
                    detail: format!("{w}x{h} pixels but {} is {w0}x{h0}", show(&files[0].path)),
                });
            }
            w0
        }
    };
    let channels = opts
        .channels
        .unwrap_or(if headers.iter().any(|h| h.2) { 3 } else { 1 });
    let images = files
        .par_iter()
        .map(|f| {
            let px = decode(&f.path, channels, out, opts.resize)?;
            if px.len() != channels * out * out {
                // the file changed between the two passes
                return Err(DataError::MixedSizes {
                    file: show(&f.path),
                    detail: "changed while it was read".to_string(),
                });
            }
            Ok(px)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        ImageSet {
            pixels: images.concat(),
            n: files.len(),
            channels,
            rows: out,
            cols: out,
            labels: files.iter().map(|f| f.label).collect(),
        },
        [h0, w0],
    ))
}

/// Reads `root/split` (`train`, `val` or `test`), from the cache in `cache_dir` when a
/// valid entry for exactly these files and options is there, else by decoding every
/// image (then written to the cache; a cache that cannot be written is only a warning).
pub fn load(
    root: &Path,
    split: &str,
    opts: &FolderOptions,
    cache_dir: Option<&Path>,
) -> Result<FolderSet, DataError> {
    let (names, files) = list(root, split)?;
    let key = cache_key(root, split, &files, opts);
    let cache = cache_dir.map(|d| d.join(format!("{key:016x}.bin")));
    if let Some(path) = &cache {
        match std::fs::File::open(path) {
            Ok(mut f) => {
                let mut bytes = Vec::new();
                let read = f.read_to_end(&mut bytes);
                match read.ok().and_then(|_| parse_cache(&bytes, key)) {
                    Some(set) if set.set.n == files.len() && set.class_names == names => {
                        return Ok(set)
                    }
                    _ => eprintln!(
                        "warning: image cache {} is damaged or stale; rebuilding it",
                        show(path)
                    ),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!(
                "warning: cannot read image cache {} ({e}); rebuilding it",
                show(path)
            ),
        }
    }
    let (set, source_size) = decode_all(&files, opts)?;
    let out = FolderSet {
        set,
        class_names: names,
        source_size,
    };
    if let Some(path) = &cache {
        if let Err(e) = write_cache(path, key, &out) {
            eprintln!(
                "warning: cannot write image cache {} ({e}); the images will be decoded again next time",
                show(path)
            );
        }
    }
    Ok(out)
}

/// The cache file of `out`: magic, key, sizes, class names, labels, pixels, then an
/// FNV-1a checksum of everything before it.
fn cache_bytes(key: u64, out: &FolderSet) -> Vec<u8> {
    let s = &out.set;
    let mut b = Vec::with_capacity(s.pixels.len() + s.n + 256);
    b.extend_from_slice(CACHE_MAGIC);
    for v in [
        key,
        s.n as u64,
        s.channels as u64,
        s.rows as u64,
        s.cols as u64,
        out.source_size[0] as u64,
        out.source_size[1] as u64,
        out.class_names.len() as u64,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for name in &out.class_names {
        b.extend_from_slice(&(name.len() as u64).to_le_bytes());
        b.extend_from_slice(name.as_bytes());
    }
    b.extend_from_slice(&s.labels);
    b.extend_from_slice(&s.pixels);
    let sum = Fnv::new().bytes(&b).0;
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

/// Parses a cache file; `None` for anything but an intact file of `key`.
fn parse_cache(bytes: &[u8], key: u64) -> Option<FolderSet> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(8)?)?;
    if Fnv::new().bytes(body).0 != u64::from_le_bytes(sum.try_into().ok()?) {
        return None;
    }
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let s = body.get(at..at.checked_add(n)?)?;
        at += n;
        Some(s)
    };
    if take(8)? != CACHE_MAGIC {
        return None;
    }
    let mut nums = [0u64; 8];
    for v in &mut nums {
        *v = u64::from_le_bytes(take(8)?.try_into().ok()?);
    }
    let [k, n, channels, rows, cols, sh, sw, classes] = nums.map(|v| v as usize);
    if k as u64 != key || classes > 256 {
        return None;
    }
    let mut class_names = Vec::with_capacity(classes);
    for _ in 0..classes {
        let len = u64::from_le_bytes(take(8)?.try_into().ok()?) as usize;
        class_names.push(String::from_utf8(take(len)?.to_vec()).ok()?);
    }
    let labels = take(n)?.to_vec();
    let pixels = take(
        n.checked_mul(channels)?
            .checked_mul(rows)?
            .checked_mul(cols)?,
    )?
    .to_vec();
    if at != body.len() || labels.iter().any(|&l| l as usize >= classes) {
        return None;
    }
    Some(FolderSet {
        set: ImageSet {
            pixels,
            n,
            channels,
            rows,
            cols,
            labels,
        },
        class_names,
        source_size: [sh, sw],
    })
}

/// Writes the cache file atomically: a temporary file in the same folder, then a rename,
/// so a reader never sees half a file (and two processes writing it both succeed).
fn write_cache(path: &Path, key: u64, out: &FolderSet) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{key:016x}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&cache_bytes(key, out))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The cache file `load` reads and writes for `root/split` with `opts` (for tests and
/// tools that want to inspect or remove it).
pub fn cache_path(
    root: &Path,
    split: &str,
    opts: &FolderOptions,
    cache_dir: &Path,
) -> Result<PathBuf, DataError> {
    let (_, files) = list(root, split)?;
    Ok(cache_dir.join(format!("{:016x}.bin", cache_key(root, split, &files, opts))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_matches_pil() {
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(0, 0, 0), 0);
        // PIL: Image.new("RGB", (1, 1), (255, 0, 0)).convert("L") -> 76
        assert_eq!(luma(255, 0, 0), 76);
        assert_eq!(luma(0, 255, 0), 150);
        assert_eq!(luma(0, 0, 255), 29);
    }

    #[test]
    fn cache_round_trips_and_rejects_damage() {
        let out = FolderSet {
            set: ImageSet {
                pixels: (0..24).collect(),
                n: 2,
                channels: 3,
                rows: 2,
                cols: 2,
                labels: vec![0, 1],
            },
            class_names: vec!["a".into(), "b".into()],
            source_size: [5, 5],
        };
        let b = cache_bytes(7, &out);
        assert_eq!(parse_cache(&b, 7), Some(out));
        assert_eq!(parse_cache(&b, 8), None);
        assert_eq!(parse_cache(&b[..b.len() - 1], 7), None);
        let mut flipped = b.clone();
        flipped[40] ^= 1;
        assert_eq!(parse_cache(&flipped, 7), None);
        assert_eq!(parse_cache(&[], 7), None);
    }
}
