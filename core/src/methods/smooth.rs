//! SmoothGrad (Smilkov et al. 2017) over any method that walks back: the
//! mean of the method's maps of n noisy copies of the image, x + σε with ε
//! standard normal and σ a fraction of the input's range (max − min);
//! SmoothGrad² averages the squared maps. Captum's `NoiseTunnel`
//! (`smoothgrad`, `smoothgrad_sq`) with `stdevs` = σ. The noise is drawn
//! from `seed` (ChaCha via `rand`'s `StdRng`, Box–Muller), the same on
//! every machine for one build.

use super::Method;
pub use crate::explain::Smooth;
use crate::explain::{Explainer, Options, Target};
use anyhow::Result;
use rand::{Rng, SeedableRng};
use tch::{Kind, Tensor};

/// `n` standard normal tensors of `shape` (one a sample), [n, ...shape],
/// on the CPU: the noise of [`map`] before it is scaled by σ.
pub fn noise(shape: &[i64], n: i64, seed: u64) -> Tensor {
    let len = n * shape.iter().product::<i64>();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = Vec::with_capacity(len as usize);
    while (v.len() as i64) < len {
        // Box–Muller: two normals from two uniforms in (0, 1].
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        v.push((r * t.cos()) as f32);
        v.push((r * t.sin()) as f32);
    }
    v.truncate(len as usize);
    let mut size = vec![n];
    size.extend_from_slice(shape);
    Tensor::from_slice(&v).view(size.as_slice())
}

/// σ of `s` for the input `x`: the fraction times max − min.
pub fn sigma(x: &Tensor, s: &Smooth) -> f64 {
    s.noise * (x.max() - x.min()).double_value(&[])
}

/// The mean (of squares, SmoothGrad²) of `m`'s maps of the noisy copies.
pub fn map(m: Method, e: &Explainer, target: Target, o: &Options, s: &Smooth) -> Result<Tensor> {
    s.check()?;
    let shape = e.x.size();
    let eps = noise(&shape[1..], s.samples, s.seed).to_device(e.x.device()) * sigma(&e.x, s);
    let mut sum: Option<Tensor> = None;
    for k in 0..s.samples {
        e.report(k as usize, s.samples as usize)?;
        let xk = &e.x + eps.get(k).unsqueeze(0);
        let ek = Explainer::new(e.net, &xk);
        let mk = m.compute(&ek, target, o)?.to_kind(Kind::Double);
        let mk = if s.squared { mk.square() } else { mk };
        sum = Some(match sum {
            None => mk,
            Some(t) => t + mk,
        });
    }
    e.report(s.samples as usize, s.samples as usize)?;
    let sum = sum.ok_or_else(|| anyhow::anyhow!("SmoothGrad with no sample"))?;
    Ok((sum / s.samples as f64).to_kind(Kind::Float))
}
