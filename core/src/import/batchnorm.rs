//! Batch norm at inference: folded into the conv before it, or kept as a
//! per-channel affine node where it cannot be folded.

use tch::{Kind, Tensor};

/// w' = w·γ/σ, b' = (b−μ)·γ/σ + β with σ = sqrt(var + eps).
pub fn fold_bn(
    w: &Tensor,
    b: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
) -> (Tensor, Tensor) {
    let k = |t: &Tensor| t.to_kind(Kind::Double);
    let scale = k(gamma) / (k(var) + eps).sqrt();
    let w2 = k(w) * scale.view([-1, 1, 1, 1]);
    let b2 = (k(b) - k(mean)) * &scale + k(beta);
    (w2.to_kind(Kind::Float), b2.to_kind(Kind::Float))
}

/// A batch norm as a per-channel affine map: scale = γ/σ, shift = β − μ·γ/σ.
pub fn bn_affine(
    gamma: &Tensor,
    beta: &Tensor,
    mean: &Tensor,
    var: &Tensor,
    eps: f64,
) -> (Tensor, Tensor) {
    let k = |t: &Tensor| t.to_kind(Kind::Double);
    let scale = k(gamma) / (k(var) + eps).sqrt();
    let shift = k(beta) - k(mean) * &scale;
    (scale.to_kind(Kind::Float), shift.to_kind(Kind::Float))
}
