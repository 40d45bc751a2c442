//! The protobuf side: tensors (raw, typed and external data) and the input's shape.

use super::*;

/// The bytes of a tensor stored outside the model file (`torch.onnx.export`
/// writes large weights to `MODEL.onnx.data`): a plain file name beside the
/// model, an offset and a length.
pub(super) fn external(t: &TensorProto, dir: &Path) -> Result<Vec<u8>> {
    let get = |k: &str| {
        t.external_data
            .iter()
            .find(|e| e.key == k)
            .map(|e| e.value.clone())
    };
    let location = get("location")
        .ok_or_else(|| anyhow!("tensor {}: external data without a location", t.name))?;
    if location.contains('/') || location.contains('\\') || location.starts_with('.') {
        bail!(
            "tensor {}: external data location {location:?} must be a file name beside the model",
            t.name
        );
    }
    let num = |k: &str| -> Result<Option<u64>> {
        get(k)
            .map(|v| {
                v.parse::<u64>()
                    .with_context(|| format!("tensor {}: external data {k} {v:?}", t.name))
            })
            .transpose()
    };
    let (offset, length) = (num("offset")?.unwrap_or(0), num("length")?);
    let path = dir.join(&location);
    let mut f = std::fs::File::open(&path)
        .with_context(|| format!("tensor {}: cannot open {}", t.name, path.display()))?;
    use std::io::{Read, Seek};
    f.seek(std::io::SeekFrom::Start(offset))?;
    let mut buf = vec![];
    match length {
        Some(n) => {
            buf.resize(n as usize, 0);
            f.read_exact(&mut buf)
                .with_context(|| format!("tensor {}: {} is too short", t.name, path.display()))?;
        }
        None => {
            f.read_to_end(&mut buf)?;
        }
    }
    Ok(buf)
}

/// A TensorProto's values as a tch tensor (float32 or int64 kinds); external
/// data is read from `dir`.
pub(super) fn tensor(t: &TensorProto, dir: &Path) -> Result<Tensor> {
    let dims = t.dims.clone();
    let n: i64 = dims.iter().product();
    let ext;
    let raw: &[u8] = if t.external_data.is_empty() {
        &t.raw_data
    } else {
        ext = external(t, dir)?;
        &ext
    };
    let le = |w: usize| raw.chunks_exact(w);
    let out = match t.data_type {
        1 => {
            let v: Vec<f32> = if !raw.is_empty() {
                le(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            } else {
                t.float_data.clone()
            };
            Tensor::from_slice(&v)
        }
        10 => {
            let v: Vec<f32> = if !raw.is_empty() {
                le(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect()
            } else {
                t.int32_data
                    .iter()
                    .map(|&b| half::f16::from_bits(b as u16).to_f32())
                    .collect()
            };
            Tensor::from_slice(&v)
        }
        11 => {
            let v: Vec<f64> = if !raw.is_empty() {
                le(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect()
            } else {
                t.double_data.clone()
            };
            Tensor::from_slice(&v).to_kind(Kind::Float)
        }
        6 => {
            let v: Vec<i64> = if !raw.is_empty() {
                le(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                    .collect()
            } else {
                t.int32_data.iter().map(|&v| v as i64).collect()
            };
            Tensor::from_slice(&v)
        }
        7 => {
            let v: Vec<i64> = if !raw.is_empty() {
                le(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect()
            } else {
                t.int64_data.clone()
            };
            Tensor::from_slice(&v)
        }
        dt => bail!(
            "tensor {}: data type {dt} is not read (float, float16, double, int32, int64 are)",
            t.name
        ),
    };
    if out.numel() as i64 != n {
        bail!(
            "tensor {}: {} values for shape {dims:?}",
            t.name,
            out.numel()
        );
    }
    Ok(out.view(dims.as_slice()))
}

/// A declared square image input: side, channels, channels-last or not.
pub(super) struct InputShape {
    pub(super) side: i64,
    pub(super) c: i64,
    pub(super) nhwc: bool,
}

/// The input's shape when the graph declares a square N×C×S×S input (or
/// N×S×S×C with 1 or 3 channels, as Keras models converted by tf2onnx).
pub(super) fn input_side(input: &onnx_protobuf::ValueInfoProto) -> Option<InputShape> {
    use onnx_protobuf::tensor_shape_proto::dimension::Value as Dim;
    let dims = input.type_.as_ref()?.value.as_ref().and_then(|v| match v {
        onnx_protobuf::type_proto::Value::TensorType(tt) => tt.shape.as_ref().map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(Dim::DimValue(v)) => v,
                    _ => 0,
                })
                .collect::<Vec<i64>>()
        }),
        _ => None,
    })?;
    match dims.as_slice() {
        [_, c, h, w] if *h > 0 && h == w && (*c == 1 || *c == 3) => Some(InputShape {
            side: *h,
            c: *c,
            nhwc: false,
        }),
        [_, h, w, c] if *h > 0 && h == w && (*c == 1 || *c == 3) => Some(InputShape {
            side: *h,
            c: *c,
            nhwc: true,
        }),
        [_, c, h, w] if *h > 0 && h == w => Some(InputShape {
            side: *h,
            c: *c,
            nhwc: false,
        }),
        _ => None,
    }
}
