//! Reading image-classification data in the IDX format of MNIST, Fashion-MNIST and KMNIST.
//!
//! An IDX file is a 4-byte magic number (two zero bytes, an element-type byte — `0x08` for
//! unsigned bytes — and the number of dimensions), one big-endian `u32` per dimension, then
//! the elements in row-major order. Images are `idx3` (`n x rows x cols`), labels `idx1`
//! (`n`). Files may be gzip-compressed (as Fashion-MNIST ships them) or plain; the loader
//! decides by the gzip magic bytes, not by the file name.
//!
//! Every check a corrupt download could fail is made here, once, with an error that names
//! the file and what is wrong, because a child trained on silently misaligned labels would
//! poison a whole search: magic number, header length, dimensions, declared count against
//! the actual number of bytes (short and long), and label count against image count.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Where the Debian package `dataset-fashion-mnist` installs the data; the default data
/// directory of every shipped task.
pub const DEFAULT_DATA_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// What to do when the data is not where it was looked for.
pub const INSTALL_HINT: &str =
    "install it with `apt-get install -y dataset-fashion-mnist` (or run scripts/setup.sh), or pass --data-dir DIR with another IDX data set";

/// Magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Why image data could not be loaded or a task's split could not be drawn. Every message
/// is one line and names the file (or task) at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// None of the accepted file names exists in the data directory.
    #[error("{file} not found in {dir}: {INSTALL_HINT}")]
    MissingFile {
        /// The preferred file name that was looked for (the gzip one).
        file: String,
        /// The directory searched.
        dir: String,
    },
    /// The file exists but could not be read (permissions, I/O error).
    #[error("{file}: cannot read ({reason})")]
    Unreadable {
        /// The file at fault.
        file: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The gzip stream is truncated or corrupt.
    #[error(
        "{file}: truncated or corrupt gzip data ({reason}); re-download or reinstall the data set"
    )]
    Gzip {
        /// The file at fault.
        file: String,
        /// The decoder's reason.
        reason: String,
    },
    /// The first four bytes are not the IDX magic number expected for this kind of file.
    #[error("{file}: bad magic number 0x{found:08x} (expected 0x{expected:08x}, an IDX {kind} file); is this the right file?")]
    BadMagic {
        /// The file at fault.
        file: String,
        /// "images" or "labels".
        kind: String,
        /// The magic number expected.
        expected: u32,
        /// The magic number found.
        found: u32,
    },
    /// The header is shorter than its declared dimensions, or a dimension is zero.
    #[error("{file}: bad IDX header ({detail})")]
    BadHeader {
        /// The file at fault.
        file: String,
        /// What is wrong.
        detail: String,
    },
    /// The body holds fewer bytes than the header declares.
    #[error("{file}: truncated body: the header declares {declared} {kind} ({expected} bytes) but only {found} bytes follow; re-download or reinstall the data set")]
    Truncated {
        /// The file at fault.
        file: String,
        /// "images" or "labels".
        kind: String,
        /// The element count the header declares.
        declared: usize,
        /// Bytes the declared count needs.
        expected: usize,
        /// Bytes present after the header.
        found: usize,
    },
    /// The body holds more bytes than the header declares (a concatenation or a wrong header).
    #[error("{file}: {extra} bytes after the {declared} {kind} the header declares; the file is corrupt")]
    TrailingData {
        /// The file at fault.
        file: String,
        /// "images" or "labels".
        kind: String,
        /// The element count the header declares.
        declared: usize,
        /// Bytes beyond the declared body.
        extra: usize,
    },
    /// The labels file and the images file of one split disagree on the number of examples.
    #[error("{labels_file} holds {labels} labels but {images_file} holds {images} images; the two files do not belong together")]
    CountMismatch {
        /// The images file.
        images_file: String,
        /// The labels file.
        labels_file: String,
        /// Number of images.
        images: usize,
        /// Number of labels.
        labels: usize,
    },
    /// A split name other than `train` or `t10k`.
    #[error("unknown split `{split}` (known: train, t10k)")]
    UnknownSplit {
        /// The name asked for.
        split: String,
    },
    /// A task asks for a class the data set does not have.
    #[error("task `{task}`: class {class} has no images in {dir} (labels present: {present})")]
    MissingClass {
        /// The task name.
        task: String,
        /// The data directory.
        dir: String,
        /// The class asked for.
        class: u8,
        /// Labels that do occur.
        present: String,
    },
    /// A folder an image-folder task needs is absent (`train/`, or `test/` when the test
    /// split is asked for).
    #[error("{folder} not found: expected {expected}")]
    MissingFolder {
        /// The folder looked for.
        folder: String,
        /// What it should hold.
        expected: String,
    },
    /// A class folder holds no image.
    #[error(
        "{folder}: class folder holds no image (.png, .jpg or .jpeg); add images or remove it"
    )]
    EmptyClass {
        /// The class folder.
        folder: String,
    },
    /// A split folder of an image-folder task has a single class.
    #[error("{folder}: only one class folder (`{class}`); a classifier needs at least 2")]
    OneClass {
        /// The split folder.
        folder: String,
        /// The only class.
        class: String,
    },
    /// A file of an image folder could not be decoded as an image.
    #[error("{file}: not a readable image ({reason})")]
    NotAnImage {
        /// The file.
        file: String,
        /// The decoder's reason.
        reason: String,
    },
    /// Images of different or non-square sizes in a task without `resolution`.
    #[error(
        "{file}: {detail}; set `resolution` in the task to resize every image to one square size"
    )]
    MixedSizes {
        /// The first file that differs.
        file: String,
        /// Its size and the size expected.
        detail: String,
    },
    /// `val/` or `test/` does not hold the class folders of `train/`.
    #[error("{folder}: class folders [{found}] differ from train/'s [{expected}]")]
    ClassMismatch {
        /// The split folder.
        folder: String,
        /// Its class names.
        found: String,
        /// Train's class names.
        expected: String,
    },
    /// Something in an image folder that is not what the layout allows.
    #[error("{path}: {detail}")]
    FolderLayout {
        /// The entry at fault.
        path: String,
        /// What was expected.
        detail: String,
    },
    /// A task asks for more training + validation images than the (class-filtered) train set has.
    #[error("task `{task}`: asks for {requested} train + validation images but the train set in {dir} has only {available} (after the class filter); lower train_images or val_images")]
    NotEnoughImages {
        /// The task name.
        task: String,
        /// The data directory.
        dir: String,
        /// train_images + val_images.
        requested: usize,
        /// Images available.
        available: usize,
    },
}

/// A whole split of a data set as stored: `u8` pixels (`[n, channels, rows, cols]`) and
/// `u8` labels. IDX data is grayscale (`channels` 1); an image folder may be RGB (3), so
/// the preprocessing reads the channel count from here rather than assuming one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSet {
    /// `n * channels * rows * cols` pixels, image after image, channel planes row-major.
    pub pixels: Vec<u8>,
    /// Number of images (= number of labels).
    pub n: usize,
    /// Channels per image: 1 (gray) or 3 (RGB planes in that order).
    pub channels: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
    /// One label per image.
    pub labels: Vec<u8>,
}

impl ImageSet {
    /// Pixels of one image (`channels * rows * cols` bytes, plane after plane). Panics if
    /// `i >= n`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let len = self.channels * self.rows * self.cols;
        &self.pixels[i * len..(i + 1) * len]
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// Images of one IDX images file, before they are paired with labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// `n * rows * cols` pixels.
    pub pixels: Vec<u8>,
    /// Number of images.
    pub n: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

/// One line, whatever a path contains.
fn show(path: &Path) -> String {
    path.display()
        .to_string()
        .split(['\n', '\r'])
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads a whole file, gunzipping it if it starts with the gzip magic bytes.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let file = show(path);
    let mut raw = Vec::new();
    File::open(path)
        .and_then(|f| BufReader::new(f).read_to_end(&mut raw))
        .map_err(|e| DataError::Unreadable {
            file: file.clone(),
            reason: e.to_string(),
        })?;
    gunzip_if_gz(raw, file)
}

/// The bytes themselves, or their gunzipped content when they start with the gzip magic.
fn gunzip_if_gz(raw: Vec<u8>, file: String) -> Result<Vec<u8>, DataError> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::Gzip {
                file,
                reason: e.to_string(),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX header of `ndims` dimensions with element type `u8`, checks the magic,
/// the dimensions and the body length, and returns the dimensions and the body.
fn parse_idx<'a>(
    bytes: &'a [u8],
    file: &str,
    kind: &str,
    magic: u32,
) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let ndims = (magic & 0xff) as usize;
    if bytes.len() < 4 {
        return Err(DataError::BadHeader {
            file: file.to_string(),
            detail: format!(
                "{} bytes, shorter than the 4-byte magic number",
                bytes.len()
            ),
        });
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        return Err(DataError::BadMagic {
            file: file.to_string(),
            kind: kind.to_string(),
            expected: magic,
            found,
        });
    }
    let header = 4 + 4 * ndims;
    if bytes.len() < header {
        return Err(DataError::BadHeader {
            file: file.to_string(),
            detail: format!(
                "{} bytes, shorter than the {header}-byte header of {ndims} dimension(s)",
                bytes.len()
            ),
        });
    }
    let dims: Vec<usize> = (0..ndims)
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    if dims.iter().skip(1).any(|&d| d == 0) {
        return Err(DataError::BadHeader {
            file: file.to_string(),
            detail: format!("zero image dimension in {dims:?}"),
        });
    }
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| DataError::BadHeader {
            file: file.to_string(),
            detail: format!("dimensions {dims:?} overflow"),
        })?;
    let body = &bytes[header..];
    if body.len() < expected {
        return Err(DataError::Truncated {
            file: file.to_string(),
            kind: kind.to_string(),
            declared: dims[0],
            expected,
            found: body.len(),
        });
    }
    if body.len() > expected {
        return Err(DataError::TrailingData {
            file: file.to_string(),
            kind: kind.to_string(),
            declared: dims[0],
            extra: body.len() - expected,
        });
    }
    Ok((dims, body))
}

/// Reads an IDX images file (`idx3`, `u8`), gzip-compressed or not.
pub fn read_images(path: &Path) -> Result<IdxImages, DataError> {
    let bytes = read_maybe_gz(path)?;
    images_from_idx(&bytes, &show(path))
}

/// Reads an IDX labels file (`idx1`, `u8`), gzip-compressed or not.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = read_maybe_gz(path)?;
    labels_from_idx(&bytes, &show(path))
}

/// The images of the bytes of an IDX images file (gzip-compressed or not); `file` names
/// it in messages.
pub fn images_from_bytes(raw: &[u8], file: &str) -> Result<IdxImages, DataError> {
    images_from_idx(&gunzip_if_gz(raw.to_vec(), file.to_string())?, file)
}

/// The labels of the bytes of an IDX labels file (gzip-compressed or not).
pub fn labels_from_bytes(raw: &[u8], file: &str) -> Result<Vec<u8>, DataError> {
    labels_from_idx(&gunzip_if_gz(raw.to_vec(), file.to_string())?, file)
}

fn images_from_idx(bytes: &[u8], file: &str) -> Result<IdxImages, DataError> {
    let (dims, body) = parse_idx(bytes, file, "images", IMAGES_MAGIC)?;
    match dims[..] {
        [n, rows, cols] => Ok(IdxImages {
            pixels: body.to_vec(),
            n,
            rows,
            cols,
        }),
        // parse_idx returns as many dimensions as the magic declares (3)
        _ => Err(DataError::BadHeader {
            file: file.to_string(),
            detail: format!("{} dimensions, expected 3", dims.len()),
        }),
    }
}

fn labels_from_idx(bytes: &[u8], file: &str) -> Result<Vec<u8>, DataError> {
    let (_, body) = parse_idx(bytes, file, "labels", LABELS_MAGIC)?;
    Ok(body.to_vec())
}

/// Finds the file of `split` and `kind` ("images-idx3" / "labels-idx1") in `dir`: the
/// gzip name Fashion-MNIST and MNIST ship (`train-images-idx3-ubyte.gz`), else the
/// uncompressed name, else the dotted name some mirrors use (`train-images.idx3-ubyte`).
fn locate(dir: &Path, split: &str, kind: &str) -> Result<PathBuf, DataError> {
    let gz = format!("{split}-{kind}-ubyte.gz");
    let dotted = format!("{split}-{}-ubyte", kind.replacen('-', ".", 1));
    let candidates = [gz.clone(), format!("{split}-{kind}-ubyte"), dotted];
    candidates
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| DataError::MissingFile {
            file: gz,
            dir: show(dir),
        })
}

/// Loads one split (`"train"` or `"t10k"`) of an IDX data set from `dir`, with every
/// consistency check of this module, including that images and labels pair up.
pub fn load_split(dir: &Path, split: &str) -> Result<ImageSet, DataError> {
    if split != "train" && split != "t10k" {
        return Err(DataError::UnknownSplit {
            split: split.to_string(),
        });
    }
    let images_path = locate(dir, split, "images-idx3")?;
    let labels_path = locate(dir, split, "labels-idx1")?;
    let images = read_images(&images_path)?;
    let labels = read_labels(&labels_path)?;
    if labels.len() != images.n {
        return Err(DataError::CountMismatch {
            images_file: show(&images_path),
            labels_file: show(&labels_path),
            images: images.n,
            labels: labels.len(),
        });
    }
    Ok(ImageSet {
        pixels: images.pixels,
        n: images.n,
        channels: 1,
        rows: images.rows,
        cols: images.cols,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(magic: u32, dims: &[u32], body: &[u8]) -> Vec<u8> {
        let mut v = magic.to_be_bytes().to_vec();
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn parses_a_well_formed_header() {
        let b = idx(IMAGES_MAGIC, &[2, 2, 3], &[1; 12]);
        let (dims, body) = parse_idx(&b, "f", "images", IMAGES_MAGIC).unwrap();
        assert_eq!(dims, vec![2, 2, 3]);
        assert_eq!(body.len(), 12);
    }

    #[test]
    fn rejects_short_and_long_bodies_and_short_headers() {
        let b = idx(IMAGES_MAGIC, &[2, 2, 3], &[1; 11]);
        assert!(matches!(
            parse_idx(&b, "f", "images", IMAGES_MAGIC),
            Err(DataError::Truncated {
                expected: 12,
                found: 11,
                ..
            })
        ));
        let b = idx(LABELS_MAGIC, &[2], &[1; 3]);
        assert!(matches!(
            parse_idx(&b, "f", "labels", LABELS_MAGIC),
            Err(DataError::TrailingData { extra: 1, .. })
        ));
        let b = IMAGES_MAGIC.to_be_bytes();
        assert!(matches!(
            parse_idx(&b, "f", "images", IMAGES_MAGIC),
            Err(DataError::BadHeader { .. })
        ));
        let b = idx(IMAGES_MAGIC, &[2, 0, 3], &[]);
        assert!(matches!(
            parse_idx(&b, "f", "images", IMAGES_MAGIC),
            Err(DataError::BadHeader { .. })
        ));
    }

    #[test]
    fn labels_magic_is_not_images_magic() {
        let b = idx(LABELS_MAGIC, &[1], &[3]);
        let e = parse_idx(&b, "x.gz", "images", IMAGES_MAGIC).unwrap_err();
        assert!(matches!(e, DataError::BadMagic { found: 0x801, .. }));
        assert!(e.to_string().contains("x.gz"), "{e}");
    }
}
