//! Linear classifiers on fixed features (paper §5): multinomial logistic
//! regression ("softmax") and a one-vs-rest linear SVM (squared hinge, as
//! LIBLINEAR's and scikit-learn's `LinearSVC` default), both with an L2
//! penalty on the weights, fitted to convergence by L-BFGS on the full batch;
//! the penalty is chosen by stratified k-fold cross-validation on the
//! training set. Features are standardised with the training statistics.

use anyhow::{bail, Result};
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    Softmax,
    Svm,
}

/// Penalties tried by cross-validation (on standardised features).
pub const LAMBDAS: [f64; 5] = [1e-4, 1e-3, 1e-2, 1e-1, 1.0];
/// Folds of the cross-validation.
pub const FOLDS: usize = 3;
/// L-BFGS iterations at most: cross-validation fits (warm-started along the
/// grid, compared by accuracy only) and the final fit.
const CV_ITERS: usize = 100;
const FINAL_ITERS: usize = 300;

/// A fitted classifier: scores = standardise(x) W + b.
pub struct Linear {
    pub mean: Tensor,
    pub std: Tensor,
    pub w: Tensor,
    pub b: Tensor,
    pub lambda: f64,
    /// Whether the fit converged before its iteration cap.
    pub converged: bool,
    /// Whether the penalty was chosen by cross-validation (false: too few
    /// images of some class, the grid's middle).
    pub cross_validated: bool,
}

fn objective(loss: Loss, x: &Tensor, y: &Tensor, w: &Tensor, b: &Tensor, lambda: f64) -> Tensor {
    let scores = x.matmul(w) + b;
    let data = match loss {
        Loss::Softmax => scores.cross_entropy_for_logits(y),
        Loss::Svm => {
            let c = w.size()[1];
            let sign = y.one_hot(c).to_kind(Kind::Double) * 2.0 - 1.0;
            ((sign * &scores) * -1.0 + 1.0)
                .clamp_min(0.0)
                .square()
                .sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
                .mean(Kind::Double)
        }
    };
    data + w.square().sum(Kind::Double) * (lambda / 2.0)
}

/// Minimise a smooth function of one flat parameter vector with L-BFGS
/// (history 10, backtracking Armijo line search); stops when the gradient's
/// largest entry is below `tol` or the objective stops moving (converged,
/// the second value true), or after `max_iter` iterations (false).
#[allow(clippy::assign_op_pattern)] // tensors that may be views: out of place
pub fn lbfgs(
    f: impl Fn(&Tensor) -> Tensor,
    x0: Tensor,
    tol: f64,
    max_iter: usize,
) -> (Tensor, bool) {
    let eval = |x: &Tensor| -> (f64, Tensor) {
        let x = x.detach().set_requires_grad(true);
        let v = f(&x);
        let g = Tensor::run_backward(&[&v], &[&x], false, false).remove(0);
        (v.double_value(&[]), g)
    };
    let mut x = x0;
    let (mut fx, mut g) = eval(&x);
    let mut hist: Vec<(Tensor, Tensor, f64)> = vec![];
    let mut converged = false;
    for _ in 0..max_iter {
        if g.abs().max().double_value(&[]) < tol {
            converged = true;
            break;
        }
        // Two-loop recursion: d = -H g. Out of place (`q = q - ..`, not
        // `q -= ..`): q starts as a view of g.
        let mut q = g.shallow_clone();
        let mut alphas = vec![];
        for (s, y, rho) in hist.iter().rev() {
            let a = rho * s.dot(&q).double_value(&[]);
            q = q - y * a;
            alphas.push(a);
        }
        if let Some((s, y, _)) = hist.last() {
            let gamma = s.dot(y).double_value(&[]) / y.dot(y).double_value(&[]);
            q = q * gamma;
        }
        for ((s, y, rho), a) in hist.iter().zip(alphas.iter().rev()) {
            let b = rho * y.dot(&q).double_value(&[]);
            q = q + s * (a - b);
        }
        let mut d = -q;
        let mut slope = g.dot(&d).double_value(&[]);
        if slope >= 0.0 {
            d = -g.shallow_clone();
            slope = g.dot(&d).double_value(&[]);
            hist.clear();
        }
        let mut t = if hist.is_empty() {
            (1.0 / g.abs().sum(Kind::Double).double_value(&[])).min(1.0)
        } else {
            1.0
        };
        let (mut xn, mut fxn, mut gn);
        loop {
            xn = &x + &d * t;
            (fxn, gn) = eval(&xn);
            if fxn <= fx + 1e-4 * t * slope || t < 1e-12 {
                break;
            }
            t *= 0.5;
        }
        let s = &xn - &x;
        let y = &gn - &g;
        let sy = s.dot(&y).double_value(&[]);
        if sy > 1e-12 {
            hist.push((s, y, 1.0 / sy));
            if hist.len() > 10 {
                let _ = hist.remove(0);
            }
        }
        let done = (fx - fxn).abs() < 1e-10 * fx.abs().max(1.0);
        (x, fx, g) = (xn, fxn, gn);
        if done {
            converged = true;
            break;
        }
    }
    if !converged && g.abs().max().double_value(&[]) < tol {
        converged = true;
    }
    (x.detach(), converged)
}

/// Split flat parameters into W [d, classes] and b [classes], and back.
fn unflatten(theta: &Tensor, d: i64, classes: i64) -> (Tensor, Tensor) {
    (
        theta.narrow(0, 0, d * classes).view([d, classes]),
        theta.narrow(0, d * classes, classes),
    )
}

fn flatten(w: &Tensor, b: &Tensor) -> Tensor {
    Tensor::cat(&[w.reshape([-1]), b.shallow_clone()], 0)
}

fn standardise_stats(x: &Tensor) -> (Tensor, Tensor) {
    let mean = x.mean_dim([0i64].as_slice(), true, Kind::Double);
    let std = x.std_dim([0i64].as_slice(), false, true).clamp_min(1e-6);
    (mean, std)
}

impl Linear {
    /// Fit on features `x` [N, D] with labels `y` [N] in 0..classes, the
    /// penalty fixed.
    pub fn fit_with(loss: Loss, x: &Tensor, y: &Tensor, classes: i64, lambda: f64) -> Linear {
        Linear::fit_from(loss, x, y, classes, lambda, None, FINAL_ITERS)
    }

    fn fit_from(
        loss: Loss,
        x: &Tensor,
        y: &Tensor,
        classes: i64,
        lambda: f64,
        init: Option<&Tensor>,
        max_iter: usize,
    ) -> Linear {
        let x = &x.to_kind(Kind::Double);
        let (mean, std) = standardise_stats(x);
        let xs = (x - &mean) / &std;
        let d = x.size()[1];
        // Warm start from `init` (the flat [W, b] of a nearby fit) or zeros.
        let (theta, converged) = lbfgs(
            |t| {
                let (w, b) = unflatten(t, d, classes);
                objective(loss, &xs, y, &w, &b, lambda)
            },
            init.map_or_else(
                || Tensor::zeros([d * classes + classes], (Kind::Double, x.device())),
                |t| t.copy(),
            ),
            1e-5,
            max_iter,
        );
        let (w, b) = unflatten(&theta, d, classes);
        Linear {
            mean,
            std,
            w,
            b,
            lambda,
            converged,
            cross_validated: false,
        }
    }

    /// Fit with the penalty of best cross-validated accuracy (ties: the
    /// larger penalty); with fewer than `FOLDS` images of some class, the
    /// middle of the grid (1e-2) without cross-validation.
    pub fn fit(loss: Loss, x: &Tensor, y: &Tensor, classes: i64) -> Result<Linear> {
        let labels: Vec<i64> = Vec::<i64>::try_from(y)?;
        if labels.is_empty() {
            bail!("no training images");
        }
        let folds = cv_folds(&labels, classes);
        let cross_validated = folds.is_some();
        let lambda = match folds {
            Some(folds) => {
                let parts: Vec<(Tensor, Tensor, Tensor, Tensor)> = (0..FOLDS)
                    .map(|k| {
                        let (tr, te): (Vec<i64>, Vec<i64>) =
                            (0..labels.len() as i64).partition(|&i| folds[i as usize] != k);
                        let (tr, te) = (Tensor::from_slice(&tr), Tensor::from_slice(&te));
                        (
                            x.index_select(0, &tr),
                            y.index_select(0, &tr),
                            x.index_select(0, &te),
                            y.index_select(0, &te),
                        )
                    })
                    .collect();
                // Strongest penalty first, each fold's fit warm-started
                // from its fit at the previous penalty.
                let mut warm: Vec<Option<Tensor>> = (0..FOLDS).map(|_| None).collect();
                let mut best = (f64::MIN, LAMBDAS[2]);
                for &l in LAMBDAS.iter().rev() {
                    let mut right = 0.0;
                    for (k, (xtr, ytr, xte, yte)) in parts.iter().enumerate() {
                        let m = Linear::fit_from(
                            loss,
                            xtr,
                            ytr,
                            classes,
                            l,
                            warm[k].as_ref(),
                            CV_ITERS,
                        );
                        right += m.accuracy(xte, yte) * yte.size()[0] as f64;
                        warm[k] = Some(flatten(&m.w, &m.b));
                    }
                    if right > best.0 {
                        best = (right, l);
                    }
                }
                best.1
            }
            None => LAMBDAS[2],
        };
        Ok(Linear {
            cross_validated,
            ..Linear::fit_with(loss, x, y, classes, lambda)
        })
    }

    pub fn scores(&self, x: &Tensor) -> Tensor {
        ((x.to_kind(Kind::Double) - &self.mean) / &self.std).matmul(&self.w) + &self.b
    }

    /// Fraction of rows of `x` whose highest score is their label.
    pub fn accuracy(&self, x: &Tensor, y: &Tensor) -> f64 {
        if y.size()[0] == 0 {
            return 0.0;
        }
        self.scores(x)
            .argmax(-1, false)
            .eq_tensor(y)
            .to_kind(Kind::Double)
            .mean(Kind::Double)
            .double_value(&[])
    }
}

/// Stratified fold of every sample (its rank within its class mod FOLDS),
/// or None when some class has fewer than FOLDS samples.
fn cv_folds(labels: &[i64], classes: i64) -> Option<Vec<usize>> {
    let mut seen = vec![0usize; classes as usize];
    let folds = labels
        .iter()
        .map(|&c| {
            let k = seen[c as usize] % FOLDS;
            seen[c as usize] += 1;
            k
        })
        .collect();
    seen.iter().all(|&n| n >= FOLDS).then_some(folds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lbfgs_finds_a_quadratic_minimum() {
        // f(x) = sum((x - c)^2 * k): minimum at c.
        let c = Tensor::from_slice(&[1.0f64, -2.0, 3.0]);
        let k = Tensor::from_slice(&[1.0f64, 10.0, 100.0]);
        let (x, converged) = lbfgs(
            |x| ((x - &c).square() * &k).sum(Kind::Float),
            Tensor::zeros([3], (Kind::Double, tch::Device::Cpu)),
            1e-6,
            200,
        );
        let d = (x - &c).abs().max().double_value(&[]);
        assert!(d < 1e-4, "{d}");
        assert!(converged);
        // Two iterations cannot reach it: said, not hidden.
        let (_, converged) = lbfgs(
            |x| ((x - &c).square() * &k).sum(Kind::Float),
            Tensor::zeros([3], (Kind::Double, tch::Device::Cpu)),
            1e-12,
            2,
        );
        assert!(!converged);
    }

    #[test]
    fn folds_are_stratified_or_absent() {
        assert_eq!(
            cv_folds(&[0, 1, 0, 1, 0, 1], 2),
            Some(vec![0, 0, 1, 1, 2, 2])
        );
        assert_eq!(cv_folds(&[0, 0, 0, 1], 2), None);
    }
}
