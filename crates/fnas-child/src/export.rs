//! A trained child made usable outside fnas: its weights under the parameter names of a
//! plain PyTorch module, a standalone `model.py` (torch.nn only) that rebuilds the
//! network from its plan, and the task's preprocessing. Everything is written into a
//! staging folder beside the output and renamed at the end ([`publish`]), so a failed
//! export leaves nothing half-written.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::store::ModuleSnapshot;
use burn::tensor::DType;
use serde::Serialize;

use crate::net::ChildNet;
use crate::plan::ChildPlan;
use crate::task::{Resize, Split, TaskData};

/// The `model.py` template; `__PLAN_JSON__` becomes the plan as a Python string literal.
const MODEL_PY: &str = include_str!("export_model.py");

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The output folder holds files and replacing it was not asked for.
    #[error("output directory {0} exists and is not empty (pass --force to replace it)")]
    NotEmpty(PathBuf),
    /// The output path is a file, not a folder.
    #[error("output path {0} exists and is not a directory")]
    NotADirectory(PathBuf),
    /// A file or folder could not be created, written, renamed or removed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A tensor of the network is not what the export expects (f32, known name).
    #[error("tensor {name}: {message}")]
    Tensor { name: String, message: String },
    /// The network could not be run (logits check).
    #[error("running the network: {0}")]
    Backend(String),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One tensor of the PyTorch state dict, raw little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct TorchTensor {
    pub name: String,
    /// safetensors dtype: `F32` or `I64`.
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// A row-major `rows x cols` matrix of little-endian f32 bytes, transposed (the
/// classifier: burn's Linear stores `[in, out]`, torch's `[out, in]`).
fn transpose_f32(bytes: &[u8], rows: usize, cols: usize) -> Vec<u8> {
    let mut tr = vec![0u8; bytes.len()];
    for r in 0..rows {
        for c in 0..cols {
            let (src, dst) = (4 * (r * cols + c), 4 * (c * rows + r));
            tr[dst..dst + 4].copy_from_slice(&bytes[src..src + 4]);
        }
    }
    tr
}

/// PyTorch's name of a burn parameter: burn's BatchNorm calls its affine parameters
/// `gamma` and `beta`, torch's `weight` and `bias`; everything else is named alike
/// (the net's field names were chosen as torch's module paths).
pub fn torch_name(burn: &str) -> String {
    if let Some(p) = burn.strip_suffix(".bn.gamma") {
        format!("{p}.bn.weight")
    } else if let Some(p) = burn.strip_suffix(".bn.beta") {
        format!("{p}.bn.bias")
    } else {
        burn.to_string()
    }
}

/// The network's tensors as `ChildNet.state_dict()` of the generated `model.py` holds
/// them: names mapped by [`torch_name`], the classifier weight transposed (burn's Linear
/// stores `[in, out]`, torch's `[out, in]`), and a `num_batches_tracked` per BatchNorm,
/// which `load_state_dict(strict=True)` requires (0: it only matters for momentum=None).
pub fn torch_state(net: &ChildNet) -> Result<Vec<TorchTensor>, ExportError> {
    let mut out = Vec::new();
    for t in net.collect(None, None, false) {
        let bytes = t.to_bytes().map_err(|e| ExportError::Tensor {
            name: t.name.clone(),
            message: format!("{e:?}"),
        })?;
        let shape: Vec<usize> = t.shape.to_vec();
        if t.dtype != DType::F32 || bytes.len() != 4 * shape.iter().product::<usize>() {
            return Err(ExportError::Tensor {
                name: t.name.clone(),
                message: format!("is {:?} of shape {shape:?}, expected f32", t.dtype),
            });
        }
        let mut bytes = bytes.to_vec();
        let mut shape = shape;
        if t.name == "classifier.weight" {
            let [rows, cols] = shape[..] else {
                return Err(ExportError::Tensor {
                    name: t.name.clone(),
                    message: format!("expected 2 dimensions, got {shape:?}"),
                });
            };
            bytes = transpose_f32(&bytes, rows, cols);
            shape = vec![cols, rows];
        }
        if let Some(p) = t.name.strip_suffix(".bn.running_var") {
            out.push(TorchTensor {
                name: format!("{p}.bn.num_batches_tracked"),
                dtype: "I64",
                shape: vec![],
                bytes: 0i64.to_le_bytes().to_vec(),
            });
        }
        out.push(TorchTensor {
            name: torch_name(&t.name),
            dtype: "F32",
            shape,
            bytes,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// burn's name of a PyTorch parameter: the inverse of [`torch_name`].
pub fn burn_name(torch: &str) -> String {
    if let Some(p) = torch.strip_suffix(".bn.weight") {
        format!("{p}.bn.gamma")
    } else if let Some(p) = torch.strip_suffix(".bn.bias") {
        format!("{p}.bn.beta")
    } else {
        torch.to_string()
    }
}

/// Loads weights written in the naming of [`torch_state`] (by the generated
/// `model.py`'s `state_dict()`, e.g. after a user's own training) into `net`: every
/// parameter and running statistic must be there, f32, with the plan's shape.
pub fn load_torch_weights(net: &mut ChildNet, path: &Path) -> Result<(), ExportError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let bad = |name: &str, message: String| ExportError::Tensor {
        name: format!("{} in {}", name, path.display()),
        message,
    };
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| bad("(header)", format!("not a safetensors file: {e}")))?;
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in file.tensors() {
        if name.ends_with(".num_batches_tracked") {
            continue;
        }
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(bad(
                &name,
                format!(
                    "is {:?}, expected F32 (save the model in float32)",
                    view.dtype()
                ),
            ));
        }
        let mut shape = view.shape().to_vec();
        let mut data = view.data().to_vec();
        if name == "classifier.weight" {
            let [rows, cols] = shape[..] else {
                return Err(bad(&name, format!("expected 2 dimensions, got {shape:?}")));
            };
            data = transpose_f32(&data, rows, cols);
            shape = vec![cols, rows];
        }
        owned.push((burn_name(&name), shape, data));
    }
    let views = owned
        .iter()
        .map(|(n, s, d)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                .map(|v| (n.clone(), v))
                .map_err(|e| bad(n, e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let burn_bytes = safetensors::serialize(views, None)
        .map_err(|e| bad("(all)", format!("re-encoding: {e}")))?;
    let mut store = burn::store::SafetensorsStore::from_bytes(Some(burn_bytes))
        .validate(false)
        .allow_partial(true);
    let applied = net
        .load_from(&mut store)
        .map_err(|e| bad("(weights)", format!("cannot be applied: {e:?}")))?;
    if !applied.errors.is_empty() || !applied.missing.is_empty() {
        let first_error = applied.errors.first().map(|e| {
            let text = format!("{e:?}");
            text.chars().take(200).collect::<String>()
        });
        return Err(bad(
            "(weights)",
            format!(
                "do not fit the child's plan: {} tensors of another shape{}, {} missing{} (weights of another architecture?)",
                applied.errors.len(),
                first_error.map_or(String::new(), |e| format!(" (first: {e})")),
                applied.missing.len(),
                applied
                    .missing
                    .first()
                    .map_or(String::new(), |(name, _)| format!(" (first: {name})")),
            ),
        ));
    }
    Ok(())
}

/// Writes `tensors` as a safetensors file (8-byte header length, JSON header, data), the
/// format torch users read with `safetensors.torch.load_file` (or the reader in
/// `model.py`, which needs no package beyond torch).
pub fn write_safetensors(tensors: &[TorchTensor], path: &Path) -> Result<(), ExportError> {
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::json!({ "format": "pt", "producer": "fnas export" }),
    );
    let mut offset = 0usize;
    for t in tensors {
        let end = offset + t.bytes.len();
        header.insert(
            t.name.clone(),
            serde_json::json!({ "dtype": t.dtype, "shape": t.shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut head = serde_json::to_vec(&serde_json::Value::Object(header))?;
    // pad with spaces so the data starts 8-byte aligned, as the reference writer does
    while (head.len() + 8) % 8 != 0 {
        head.push(b' ');
    }
    let file = std::fs::File::create(path).map_err(io(path))?;
    let mut w = std::io::BufWriter::new(file);
    w.write_all(&(head.len() as u64).to_le_bytes())
        .map_err(io(path))?;
    w.write_all(&head).map_err(io(path))?;
    for t in tensors {
        w.write_all(&t.bytes).map_err(io(path))?;
    }
    w.flush().map_err(io(path))?;
    Ok(())
}

/// What an input must go through before the network sees it (`preprocess.json`):
/// pixels scaled to [0, 1], resized from `source_size` to `resolution` (`resize`),
/// then `(p - mean) / std`; labels are `class_map`'s positions of the original labels.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Preprocess {
    pub task: String,
    pub resolution: usize,
    pub channels: usize,
    /// `gray` (one plane) or `rgb` (R, G, B planes in that order): what the channels are,
    /// so a user converts their images the way the network was trained.
    pub color: &'static str,
    /// Height and width of the original images, before resizing.
    pub source_size: [usize; 2],
    /// `bilinear` (torch `interpolate`, `align_corners=False`, no antialias) or
    /// `nearest` (`nearest-exact`); irrelevant when the resolutions agree.
    pub resize: &'static str,
    pub pixel_scale: f64,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub classes: usize,
    /// Original label of each output of the classifier.
    pub class_map: Vec<u8>,
    /// Name of each output: an image folder's class folder, or the IDX label number.
    pub class_names: Vec<String>,
}

impl Preprocess {
    /// The preprocessing of a materialised task.
    pub fn of(data: &TaskData) -> Preprocess {
        let channels = data.train.channels;
        let t = &data.task;
        Preprocess {
            task: t.name.clone(),
            resolution: data.resolution(),
            channels,
            color: if channels == 3 { "rgb" } else { "gray" },
            source_size: data.source_size,
            resize: match t.resize {
                Resize::Bilinear => "bilinear",
                Resize::Nearest => "nearest",
            },
            pixel_scale: 1.0 / 255.0,
            mean: vec![t.normalize.mean; channels],
            std: vec![t.normalize.std; channels],
            classes: data.classes,
            class_map: data.class_map.clone(),
            class_names: data.class_names.clone(),
        }
    }
}

/// The standalone `model.py` of `plan`: torch.nn only, the plan embedded.
pub fn model_py(plan: &ChildPlan) -> Result<String, ExportError> {
    let json = serde_json::to_string(plan)?;
    // a JSON string literal is a valid Python string literal
    let literal = serde_json::to_string(&json)?;
    Ok(MODEL_PY.replace("__PLAN_JSON__", &literal))
}

/// Logits of the first `n` images of `split` (all if fewer), one row per image: what the
/// exported model must reproduce.
pub fn logits(
    net: &ChildNet,
    split: &Split,
    n: usize,
    device: &Device,
) -> Result<Vec<Vec<f32>>, ExportError> {
    let n = n.min(split.n);
    let len = split.image_len();
    let x = split.x[..n * len].to_vec();
    let shape = [n, split.channels, split.height, split.width];
    let input = Tensor::<4>::from_data(TensorData::new(x, shape), device);
    let out = net.forward(input);
    let [_, k] = out.dims();
    let v = out
        .try_into_vec_as::<f32>()
        .map_err(|e| ExportError::Backend(format!("{e:?}")))?;
    Ok(v.chunks(k.max(1)).map(|r| r.to_vec()).collect())
}

/// Refuses an output path that cannot receive an export: a file, or a non-empty folder
/// without `force`. Checked before any work, and again by [`publish`].
pub fn check_output(out: &Path, force: bool) -> Result<(), ExportError> {
    match std::fs::metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(out)(e)),
        Ok(m) if !m.is_dir() => Err(ExportError::NotADirectory(out.to_path_buf())),
        Ok(_) => {
            let mut entries = std::fs::read_dir(out).map_err(io(out))?;
            if entries.next().is_some() && !force {
                Err(ExportError::NotEmpty(out.to_path_buf()))
            } else {
                Ok(())
            }
        }
    }
}

/// Writes an export: `write` fills a fresh staging folder beside `out`, which then
/// replaces `out` (an empty one, or any one with `force`). On any error the staging
/// folder is removed and `out` is untouched.
pub fn publish(
    out: &Path,
    force: bool,
    write: impl FnOnce(&Path) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    check_output(out, force)?;
    let name = out
        .file_name()
        .ok_or_else(|| ExportError::NotADirectory(out.to_path_buf()))?
        .to_string_lossy()
        .to_string();
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let pid = std::process::id();
    let stage = parent.join(format!(".{name}.fnas-export-{pid}"));
    let old = parent.join(format!(".{name}.fnas-replaced-{pid}"));
    std::fs::create_dir(&stage).map_err(io(&stage))?;
    let result = write(&stage).and_then(|()| {
        if out.exists() {
            std::fs::rename(out, &old).map_err(io(out))?;
            if let Err(e) = std::fs::rename(&stage, out) {
                // put the old folder back
                let _ = std::fs::rename(&old, out);
                return Err(io(out)(e));
            }
            std::fs::remove_dir_all(&old).map_err(io(&old))
        } else {
            std::fs::rename(&stage, out).map_err(io(out))
        }
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&stage);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batchnorm_names_become_torch_names() {
        assert_eq!(torch_name("stem.bn.gamma"), "stem.bn.weight");
        assert_eq!(
            torch_name("blocks.3.layers.1.dw.bn.beta"),
            "blocks.3.layers.1.dw.bn.bias"
        );
        assert_eq!(torch_name("stem.bn.running_var"), "stem.bn.running_var");
        assert_eq!(torch_name("classifier.bias"), "classifier.bias");
    }

    #[test]
    fn publish_leaves_nothing_on_error() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let r = publish(&out, false, |d| {
            std::fs::write(d.join("a"), "x").map_err(io(d))?;
            Err(ExportError::Backend("boom".into()))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
        publish(&out, false, |d| {
            std::fs::write(d.join("a"), "x").map_err(io(d))
        })
        .unwrap();
        assert!(matches!(
            publish(&out, false, |_| Ok(())),
            Err(ExportError::NotEmpty(_))
        ));
        publish(&out, true, |d| {
            std::fs::write(d.join("b"), "y").map_err(io(d))
        })
        .unwrap();
        assert!(out.join("b").exists() && !out.join("a").exists());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
