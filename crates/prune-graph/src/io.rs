//! Saving and loading a model: `model.json` (the IR) and
//! `weights.safetensors` (tensors named `<node>.weight`, `<node>.bias`,
//! `<node>.running_mean`, ...). Files are written atomically: a temporary
//! file in the same directory, flushed, then renamed over the target.

use crate::error::{GraphError, Result};
use crate::ir::Graph;
use crate::model::Model;
use crate::params::ParamStore;
use prune_core::Tensor;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

/// File name of the architecture.
pub const MODEL_FILE: &str = "model.json";
/// File name of the weights.
pub const WEIGHTS_FILE: &str = "weights.safetensors";
const FORMAT: &str = "prune-nn/1";

/// Writes `bytes` to `path` atomically (temp file + fsync + rename).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| GraphError::io(dir, e))?;
    let file_name = path
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        GraphError::io(path, e)
    })
}

/// Storage precision of saved weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StorageDtype {
    #[default]
    F32,
    F16,
    Bf16,
}

#[derive(Serialize, Deserialize)]
struct ModelFile {
    format: String,
    graph: Graph,
}

/// Serializes tensors to safetensors bytes.
pub fn tensors_to_safetensors<'a>(
    tensors: impl IntoIterator<Item = (&'a String, &'a Tensor)>,
    dtype: StorageDtype,
) -> Result<Vec<u8>> {
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, t)| {
            let bytes = match dtype {
                StorageDtype::F32 => t.as_bytes().to_vec(),
                StorageDtype::F16 => t
                    .to_f16()
                    .iter()
                    .flat_map(|x| x.to_bits().to_le_bytes())
                    .collect(),
                StorageDtype::Bf16 => t
                    .to_bf16()
                    .iter()
                    .flat_map(|x| x.to_bits().to_le_bytes())
                    .collect(),
            };
            (name.clone(), t.shape().to_vec(), bytes)
        })
        .collect();
    let st_dtype = match dtype {
        StorageDtype::F32 => Dtype::F32,
        StorageDtype::F16 => Dtype::F16,
        StorageDtype::Bf16 => Dtype::BF16,
    };
    let mut views = Vec::with_capacity(owned.len());
    for (name, shape, bytes) in &owned {
        let v = TensorView::new(st_dtype, shape.clone(), bytes).map_err(|e| GraphError::Param {
            name: name.clone(),
            reason: e.to_string(),
        })?;
        views.push((name.clone(), v));
    }
    safetensors::serialize(views, &None).map_err(|e| GraphError::Invalid(e.to_string()))
}

/// Why safetensors bytes did not parse, in words: a short or cut-off file
/// gets "truncated" rather than the parser's variant name.
fn safetensors_reason(e: safetensors::SafeTensorError, len: usize) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::HeaderTooSmall | E::MetadataIncompleteBuffer | E::InvalidHeaderLength => {
            format!("the file is truncated or is not a safetensors file ({len} bytes; {e:?})")
        }
        other => format!("not a valid safetensors file: {other}"),
    }
}

/// Parses safetensors bytes (F32, F16 or BF16) into named f32 tensors.
pub fn tensors_from_safetensors(bytes: &[u8], path: &Path) -> Result<Vec<(String, Tensor)>> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| GraphError::io(path, safetensors_reason(e, bytes.len())))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let shape = view.shape().to_vec();
        let data = view.data();
        let bad = |reason: String| GraphError::Param {
            name: name.clone(),
            reason: format!("{}: {reason}", path.display()),
        };
        let t = match view.dtype() {
            Dtype::F32 => Tensor::from_le_bytes(shape, data),
            Dtype::F16 => {
                let h: Vec<half::f16> = data
                    .chunks_exact(2)
                    .map(|c| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])))
                    .collect();
                Tensor::from_f16(shape, &h)
            }
            Dtype::BF16 => {
                let h: Vec<half::bf16> = data
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])))
                    .collect();
                Tensor::from_bf16(shape, &h)
            }
            other => return Err(bad(format!("unsupported dtype {other:?}"))),
        }
        .map_err(|e| bad(e.to_string()))?;
        out.push((name, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

impl Model {
    /// Writes `model.json` and `weights.safetensors` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.save_as(dir, StorageDtype::F32)
    }

    /// Like [`Model::save`], storing weights in the given precision.
    pub fn save_as(&self, dir: &Path, dtype: StorageDtype) -> Result<()> {
        self.validate()?;
        let json = serde_json::to_vec_pretty(&ModelFile {
            format: FORMAT.into(),
            graph: self.graph.clone(),
        })
        .map_err(|e| GraphError::io(&dir.join(MODEL_FILE), e))?;
        let bytes = tensors_to_safetensors(self.params.iter(), dtype)?;
        atomic_write(&dir.join(WEIGHTS_FILE), &bytes)?;
        atomic_write(&dir.join(MODEL_FILE), &json)
    }

    /// Reads a model written by [`Model::save`], validating shapes and
    /// rejecting NaN or infinite values (the error names the tensor).
    pub fn load(dir: &Path) -> Result<Model> {
        let mpath = dir.join(MODEL_FILE);
        let text = std::fs::read(&mpath).map_err(|e| GraphError::io(&mpath, e))?;
        let file: ModelFile =
            serde_json::from_slice(&text).map_err(|e| GraphError::io(&mpath, e))?;
        if file.format != FORMAT {
            return Err(GraphError::io(
                &mpath,
                format!("unknown format '{}', expected '{FORMAT}'", file.format),
            ));
        }
        let wpath = dir.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&wpath).map_err(|e| GraphError::io(&wpath, e))?;
        let mut params = ParamStore::new();
        for (name, t) in tensors_from_safetensors(&bytes, &wpath)? {
            if let Some(bad) = t.data().iter().position(|v| !v.is_finite()) {
                return Err(GraphError::io(
                    &wpath,
                    format!(
                        "tensor '{name}' holds a non-finite value ({} at flat index {bad}); \
                         the model cannot be used",
                        t.data()[bad]
                    ),
                ));
            }
            params.insert(name, t);
        }
        let model = Model {
            graph: file.graph,
            params,
        };
        model.validate().map_err(|e| GraphError::io(dir, e))?;
        Ok(model)
    }
}
