//! Feature visualisation against torch-lucent 0.1.8 (tests/visualize_ref.py):
//! the gradient of one step, the objective reached, reproducibility, a
//! whole layer, and a class visualisation the network believes.

mod common;

use common::{bundled_zfnet, cosine, imported};
use std::path::Path;
use zfvis_core::analyses::visualize::{pre_activation, render, VisualizeRequest, VisualizeResult};
use zfvis_core::checkpoint::ModelDir;
use zfvis_core::net::Net;
use zfvis_core::tch::{Device, Kind, Tensor};
use zfvis_core::visualize::{Input, Objective, Recipe, Term, Visualizer};
use zfvis_dev::testing::{python, tempdir};

fn open(dir: &Path) -> (ModelDir, Net) {
    let m = ModelDir::open(dir).unwrap();
    let mut net = m.load(None, Device::Cpu).unwrap();
    net.vs.freeze();
    (m, net)
}

fn request(v: serde_json::Value) -> VisualizeRequest {
    let mut base = serde_json::json!({"model": "zfnet-woofnette", "epoch": 24});
    base.as_object_mut()
        .unwrap()
        .extend(v.as_object().unwrap().clone());
    serde_json::from_value(base).unwrap()
}

fn run(m: &ModelDir, net: &Net, r: &VisualizeRequest) -> VisualizeResult {
    let names: Vec<String> = m.manifest.classes.iter().map(|c| c.name.clone()).collect();
    let input = Input::of(&m.manifest.preprocess());
    render(net, input, &names, r, &mut |_, _| Ok(()), &mut |_| {}).unwrap()
}

/// Two steps (from a fresh spectrum, then from the one our Adam step gave)
/// with the same draws: our gradient of the loss with respect to the
/// spectrum against Lucent's autograd from the same spectrum.
fn gradient_matches(model: &[&str], dir: &Path, unit: usize, reference_unit: &str, map: i64) {
    let (m, net) = open(dir);
    let node = pre_activation(&net.spec, &net.units, unit);
    let o = Objective {
        targets: vec![vec![(1.0, Term::Channel { node, map })]],
        diversity: None,
    };
    let input = Input::of(&m.manifest.preprocess());
    let mut v = Visualizer::new(&net, input, o, Recipe::lucid(net.spec.input_size, 7)).unwrap();
    let tmp = tempdir("vis-grad");
    let draws: Vec<_> = (0..2).map(|_| v.draw().unwrap()).collect();
    let dj = tmp.join("draws.json");
    std::fs::write(&dj, serde_json::to_string(&draws).unwrap()).unwrap();
    // The spectrum before each step: Lucent starts each from ours.
    let mut ours = vec![];
    for (k, d) in draws.iter().enumerate() {
        let init = tmp.join(format!("init{}.npy", k + 1));
        v.param().detach().write_npy(&init).unwrap();
        v.step_with(Some(d)).unwrap();
        ours.push(v.param().grad().detach().copy());
    }
    let mut args: Vec<&str> = vec!["grad"];
    args.extend_from_slice(model);
    let map_s = map.to_string();
    args.extend([
        reference_unit,
        &map_s,
        dj.to_str().unwrap(),
        tmp.to_str().unwrap(),
    ]);
    python("visualize_ref.py", &args);
    for (k, g) in ours.iter().enumerate() {
        let theirs = Tensor::read_npy(tmp.join(format!("grad{}.npy", k + 1))).unwrap();
        let c = cosine(g, &theirs);
        let ratio = (g.norm() / theirs.norm()).double_value(&[]);
        eprintln!(
            "{model:?} step {}: cosine {c:.7}, norm ratio {ratio:.6} ({draws:?})",
            k + 1
        );
        assert!(c >= 0.9999, "step {}: cosine {c}", k + 1);
        assert!(
            (ratio - 1.0).abs() < 1e-2,
            "step {}: norm ratio {ratio}",
            k + 1
        );
    }
}

#[test]
fn the_gradient_is_lucents_on_the_bundled_zfnet() {
    let (dir, snap) = bundled_zfnet();
    let (d, s) = (dir.to_str().unwrap(), snap.to_str().unwrap());
    gradient_matches(&["zfnet", d, s], &dir, 3, "3", 5);
}

#[test]
fn the_gradient_is_lucents_on_an_imported_googlenet() {
    let (dir, pth) = imported("googlenet");
    let (m, net) = open(&dir);
    let unit = net.spec.find_unit("inception4a").unwrap();
    drop((m, net));
    let arg = ["torchvision:googlenet", pth.to_str().unwrap()];
    gradient_matches(&arg, &dir, unit, "inception4a", 17);
}

/// The median over 3 seeds of the map's mean on the final image: ours with
/// Lucid's recipe against Lucent's `render_vis` with its defaults.
#[test]
fn the_objective_reaches_lucents() {
    let (dir, snap) = bundled_zfnet();
    let (m, net) = open(&dir);
    let (unit, map, steps) = (3usize, 5i64, 256usize);
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[1]
    };
    let ours: Vec<f64> = (0..3u64)
        .map(|seed| {
            let r = request(
                serde_json::json!({"layer": unit, "map": map, "steps": steps, "seed": seed}),
            );
            run(&m, &net, &r).images[0].objective
        })
        .collect();
    let out = python(
        "visualize_ref.py",
        &[
            "render",
            "zfnet",
            dir.to_str().unwrap(),
            snap.to_str().unwrap(),
            &unit.to_string(),
            &map.to_string(),
            &steps.to_string(),
            "224",
            "0",
            "1",
            "2",
        ],
    );
    let theirs: Vec<f64> = serde_json::from_str(out.trim()).unwrap();
    let (a, b) = (median(ours.clone()), median(theirs.clone()));
    eprintln!("conv{unit} map {map}, {steps} steps: zfvis {ours:?} (median {a:.3}), Lucent {theirs:?} (median {b:.3}), ratio {:.3}", a / b);
    assert!(b > 0.0, "Lucent's objective {b}");
    assert!(a >= 0.9 * b, "zfvis {a} < 0.9 × Lucent's {b}");
}

#[test]
fn the_same_seed_gives_the_same_bytes() {
    let (dir, _) = bundled_zfnet();
    let (m, net) = open(&dir);
    let r =
        |seed: u64| request(serde_json::json!({"layer": 2, "map": 3, "steps": 12, "seed": seed}));
    let a = run(&m, &net, &r(4));
    let b = run(&m, &net, &r(4));
    let c = run(&m, &net, &r(5));
    assert_eq!(a.images[0].png, b.images[0].png);
    assert_eq!(a.images[0].objective, b.images[0].objective);
    assert_ne!(a.images[0].png, c.images[0].png);
}

#[test]
fn a_whole_layer_a_batch_of_diverse_images_and_a_sum() {
    let (dir, _) = bundled_zfnet();
    let (m, net) = open(&dir);
    // conv1's 24 maps, in batches of 16: one image a map, in order.
    let all = run(
        &m,
        &net,
        &request(serde_json::json!({"layer": 1, "steps": 3})),
    );
    let maps: Vec<Option<i64>> = all.images.iter().map(|i| i.map).collect();
    assert_eq!(maps, (0..24).map(Some).collect::<Vec<_>>());
    let some = run(
        &m,
        &net,
        &request(serde_json::json!({"layer": 1, "maps": "2-4,9", "steps": 3})),
    );
    let maps: Vec<Option<i64>> = some.images.iter().map(|i| i.map).collect();
    assert_eq!(maps, vec![Some(2), Some(3), Some(4), Some(9)]);
    // The same map with diversity: the images' Gram matrices at the unit
    // are less alike than without (Lucid's measure: the cosine similarity
    // summed over ordered pairs, over the batch; 2 for three equal images).
    let pre = m.manifest.preprocess();
    let similarity = |div: f64| {
        let r = request(
            serde_json::json!({"layer": 3, "map": 5, "steps": 48, "batch": 3, "diversity": div}),
        );
        let res = run(&m, &net, &r);
        assert_eq!(res.images.len(), 3);
        let x: Vec<Tensor> = res
            .pictures
            .iter()
            .map(|p| zfvis_core::preprocess::to_tensor(p, &pre.mean, &pre.std))
            .collect();
        let l = &net.outputs_at(&Tensor::stack(&x, 0), &[net.units[2].node])[0];
        zfvis_core::visualize::diversity(l).double_value(&[])
    };
    let (plain, diverse) = (similarity(0.0), similarity(100.0));
    eprintln!("Gram similarity of the batch's images at conv3: plain {plain:.3}, diversity 100: {diverse:.3}");
    assert!(diverse < plain, "diversity {diverse} >= plain {plain}");
    // A weighted sum climbs both terms.
    let r = request(serde_json::json!({"layer": 3, "map": 5, "plus": "0.5*4:2", "steps": 3}));
    assert!(run(&m, &net, &r).objective.contains("plus 0.5*4:2"));
}

/// Simonyan et al.'s class model, Lucid's recipe: the network believes
/// it (three classes in one batch, each read back from its PNG).
#[test]
fn a_class_visualisation_is_believed() {
    let (dir, _) = bundled_zfnet();
    let (m, net) = open(&dir);
    let classes = [0i64, 10, 14]; // tench, Samoyed, church
    let o = Objective {
        targets: classes
            .iter()
            .map(|&class| vec![(1.0, Term::Class { class })])
            .collect(),
        diversity: None,
    };
    let input = Input::of(&m.manifest.preprocess());
    let mut v = Visualizer::new(&net, input, o, Recipe::lucid(224, 0)).unwrap();
    for _ in 0..256 {
        v.step().unwrap();
    }
    let pre = m.manifest.preprocess();
    for (k, &class) in classes.iter().enumerate() {
        let img = zfvis_core::visualize::to_rgb(&v.images().get(k as i64)).unwrap();
        let png = zfvis_core::picture::png(&img);
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        let x = zfvis_core::preprocess::to_tensor(&img, &pre.mean, &pre.std).unsqueeze(0);
        let p = net.forward_t(&x, false).softmax(-1, Kind::Float);
        let pc = p.double_value(&[0, class]);
        let name = &m.manifest.classes[class as usize].name;
        eprintln!("class {class} ({name}): p = {pc:.4} on its PNG");
        assert!(pc > 0.9, "class {class}: p = {pc}");
    }
}
