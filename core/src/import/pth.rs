//! PyTorch `torch.save` files (zip format) read as data: the pickle is parsed
//! by candle's unpickler, which builds a tree of objects and never calls
//! anything. Before any tensor is read, every Python global the pickle names
//! is checked against the few a state dict needs; a file naming any other
//! (a `__reduce__` payload such as `os.system`) is refused.

use anyhow::{anyhow, bail, Context, Result};
use candle_core::pickle::{Object, PthTensors, Stack};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use tch::Tensor;

/// Globals a state dict (or a dict holding one) may name.
fn allowed(module: &str, name: &str) -> bool {
    match module {
        "collections" => name == "OrderedDict",
        "torch._utils" => matches!(
            name,
            "_rebuild_tensor_v2" | "_rebuild_tensor" | "_rebuild_parameter"
        ),
        "torch" => name.ends_with("Storage") || name == "Size",
        "torch._tensor" => name == "_rebuild_from_type_v2",
        "torch.nn.parameter" => name == "Parameter",
        _ => false,
    }
}

fn check_globals(o: &Object) -> Result<()> {
    match o {
        Object::Class {
            module_name,
            class_name,
        } => {
            if !allowed(module_name, class_name) {
                bail!(
                    "it names the Python global {module_name}.{class_name}, which a state dict \
                     does not need; zfvis reads tensors and plain containers only and never runs \
                     code from a file (re-save with torch.save(model.state_dict(), path))"
                );
            }
            Ok(())
        }
        Object::Tuple(v) | Object::List(v) => v.iter().try_for_each(check_globals),
        Object::Dict(kv) => kv.iter().try_for_each(|(k, v)| {
            check_globals(k)?;
            check_globals(v)
        }),
        Object::Reduce { callable, args } | Object::Build { callable, args } => {
            check_globals(callable)?;
            check_globals(args)
        }
        Object::PersistentLoad(o) => check_globals(o),
        _ => Ok(()),
    }
}

/// The dict keys of the pickle's root object, if it is a dict.
fn root_keys(o: &Object) -> Vec<String> {
    match o {
        Object::Dict(kv) => kv
            .iter()
            .filter_map(|(k, _)| match k {
                Object::Unicode(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

/// Every tensor of a `torch.save`d state dict (or of its `state_dict` /
/// `model` entry), as fp32, names without a DataParallel `module.` prefix.
pub fn read(path: &Path) -> Result<HashMap<String, Tensor>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut zip = match zip_archive(file) {
        Some(z) => z,
        None => bail!(
            "not a zip-format torch.save file (legacy or other pickle formats are not read; \
             re-save it with torch.save in PyTorch >= 1.6)"
        ),
    };
    let pkl = (0..zip.len())
        .filter_map(|i| {
            zip.by_index(i)
                .ok()
                .and_then(|f| f.name().ok().map(|n| n.to_string()))
        })
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| anyhow!("no data.pkl inside: not a torch.save file"))?;
    let mut bytes = vec![];
    zip.by_name(&pkl)?.read_to_end(&mut bytes)?;
    let mut stack = Stack::empty();
    stack
        .read_loop(&mut std::io::Cursor::new(&bytes))
        .map_err(|e| anyhow!("unreadable pickle: {e}"))?;
    let root = stack
        .finalize()
        .map_err(|e| anyhow!("unreadable pickle: {e}"))?;
    check_globals(&root).context("refused")?;
    let keys = root_keys(&root);
    let mut found = None;
    for key in [None, Some("state_dict"), Some("model"), Some("net")] {
        if let Some(k) = key {
            if !keys.iter().any(|x| x == k) {
                continue;
            }
        }
        let t = PthTensors::new(path, key).map_err(|e| anyhow!("{e}"))?;
        if !t.tensor_infos().is_empty() {
            found = Some(t);
            break;
        }
    }
    let Some(pth) = found else {
        bail!("no tensors found (expected a state dict, or a dict with one under \"state_dict\" or \"model\")");
    };
    let mut out = HashMap::new();
    for name in pth.tensor_infos().keys() {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        let t = pth
            .get(name)
            .map_err(|e| anyhow!("tensor {name}: {e}"))?
            .ok_or_else(|| anyhow!("tensor {name} vanished"))?;
        let dims: Vec<i64> = t.dims().iter().map(|&d| d as i64).collect();
        let v: Vec<f32> = t
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .map_err(|e| anyhow!("tensor {name}: {e}"))?;
        let key = name.strip_prefix("module.").unwrap_or(name).to_string();
        out.insert(key, Tensor::from_slice(&v).view(dims.as_slice()));
    }
    Ok(out)
}

fn zip_archive(file: std::fs::File) -> Option<zip::ZipArchive<std::fs::File>> {
    zip::ZipArchive::new(file).ok()
}
