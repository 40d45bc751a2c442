//! The compare metrics on synthetic filters and images with known spectra,
//! and the band split against a brute-force DFT written out in plain Rust.

use image::RgbImage;
use zfvis_core::compare::{self, ImageSet, BAND_EDGES, FFT_SIZE};
use zfvis_core::net::{Arch, Init, Net, NetSpec};
use zfvis_core::tch::{self, Device, Kind, Tensor};

fn t(v: &[f64], shape: &[i64]) -> Tensor {
    Tensor::from_slice(v).view(shape)
}

/// [1, 1, n, n] image of cos(2 pi (fx x + fy y)).
fn cosine(n: i64, fx: f64, fy: f64, amp: f64) -> Vec<f64> {
    let mut v = vec![];
    for y in 0..n {
        for x in 0..n {
            let a = 2.0 * std::f64::consts::PI * (fx * x as f64 + fy * y as f64);
            v.push(amp * a.cos());
        }
    }
    v
}

#[test]
fn cosines_on_the_grid_fall_in_their_band() {
    let n = 64;
    // 4/64 = 0.0625 (low), 10/64 = 0.156 (mid), 20/64 = 0.3125 (high);
    // (8, 8)/64 has |f| = 0.177 (mid); (12, 12)/64 has 0.265 (high).
    for (kx, ky, band) in [
        (4, 0, 0),
        (10, 0, 1),
        (20, 0, 2),
        (8, 8, 1),
        (12, 12, 2),
        (0, 3, 0),
    ] {
        let x = t(
            &cosine(n, kx as f64 / 64.0, ky as f64 / 64.0, 1.0),
            &[1, 1, n, n],
        );
        let p: Vec<f64> =
            Vec::try_from(&compare::band_power(&x, None, &BAND_EDGES).view([-1])).unwrap();
        let total: f64 = p.iter().sum();
        assert!(
            (p[band] / total - 1.0).abs() < 1e-9,
            "({kx},{ky}) expected all energy in band {band}: {p:?}"
        );
    }
}

#[test]
fn share_above_is_the_energy_ratio_of_a_two_tone_image() {
    let n = 224;
    // Amplitude 1 at 14/224 = 0.0625 and amplitude 2 at 70/224 = 0.3125:
    // energies 1 : 4, so 4/5 of it lies above 1/4 and above 1/8.
    let a = cosine(n, 14.0 / 224.0, 0.0, 1.0);
    let b = cosine(n, 0.0, 70.0 / 224.0, 2.0);
    let v: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    // Three channels of the same picture, and a second item of pure low tone.
    let mut both = v.repeat(3);
    both.extend(a.repeat(3));
    let x = t(&both, &[2, 3, n, n]);
    let s = compare::share_above(&x.narrow(0, 0, 1), 0.25)
        .unwrap()
        .unwrap();
    assert!((s - 0.8).abs() < 1e-9, "{s}");
    let s = compare::share_above(&x.narrow(0, 0, 1), 0.125)
        .unwrap()
        .unwrap();
    assert!((s - 0.8).abs() < 1e-9, "{s}");
    // The mean over items: (0.8 + 0) / 2.
    let s = compare::share_above(&x, 0.25).unwrap().unwrap();
    assert!((s - 0.4).abs() < 1e-9, "{s}");
    // All-zero items do not count; nothing at all gives None.
    assert_eq!(
        compare::share_above(
            &Tensor::zeros([2, 3, 8, 8], (Kind::Double, Device::Cpu)),
            0.1
        )
        .unwrap(),
        None
    );
}

/// Brute-force DTFT power of a [C, k, k] filter on the FFT_SIZE grid, split by band.
fn brute_bands(w: &[f64], c: usize, k: usize) -> [f64; 3] {
    let n = FFT_SIZE as usize;
    let freq = |i: usize| -> f64 {
        let i = i as f64;
        if i < n as f64 / 2.0 {
            i / n as f64
        } else {
            (i - n as f64) / n as f64
        }
    };
    let mut out = [0.0; 3];
    for u in 0..n {
        for v in 0..n {
            let (fy, fx) = (freq(u), freq(v));
            let r = (fx * fx + fy * fy).sqrt();
            let band = if r < BAND_EDGES[0] {
                0
            } else if r < BAND_EDGES[1] {
                1
            } else {
                2
            };
            for ch in 0..c {
                let (mut re, mut im) = (0.0, 0.0);
                for y in 0..k {
                    for x in 0..k {
                        let a = -2.0 * std::f64::consts::PI * (fy * y as f64 + fx * x as f64);
                        let val = w[(ch * k + y) * k + x];
                        re += val * a.cos();
                        im += val * a.sin();
                    }
                }
                out[band] += re * re + im * im;
            }
        }
    }
    let s: f64 = out.iter().sum();
    out.map(|v| v / s)
}

#[test]
fn band_energy_matches_a_brute_force_dft() {
    tch::manual_seed(3);
    let (c, k) = (3usize, 7usize);
    // A smooth blob, an edge and a checkerboard: low, mixed and high.
    let blob: Vec<f64> = (0..c * k * k)
        .map(|i| {
            let (y, x) = (((i / k) % k) as f64 - 3.0, (i % k) as f64 - 3.0);
            (-(x * x + y * y) / 4.0).exp()
        })
        .collect();
    let edge: Vec<f64> = (0..c * k * k)
        .map(|i| if i % k < 3 { -1.0 } else { 1.0 })
        .collect();
    let checker: Vec<f64> = (0..c * k * k)
        .map(|i| if ((i / k) + i) % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    for (name, w) in [("blob", &blob), ("edge", &edge), ("checker", &checker)] {
        let b = compare::band_energy(&t(w, &[1, c as i64, k as i64, k as i64])).unwrap();
        let e = brute_bands(w, c, k);
        for (got, want) in [b.low, b.mid, b.high].iter().zip(e) {
            assert!((got - want).abs() < 1e-9, "{name}: {b:?} vs {e:?}");
        }
        assert!((b.low + b.mid + b.high - 1.0).abs() < 1e-12);
    }
    let blob_b = compare::band_energy(&t(&blob, &[1, 3, 7, 7])).unwrap();
    let checker_b = compare::band_energy(&t(&checker, &[1, 3, 7, 7])).unwrap();
    assert!(blob_b.low > 0.6 && blob_b.high < 0.02, "{blob_b:?}");
    assert!(checker_b.high > 0.95, "{checker_b:?}");
}

#[test]
fn white_noise_filters_give_the_band_areas() {
    // E|W(f)|^2 is flat for white filters, so each band's share tends to its
    // share of the FFT grid's bins.
    let n = FFT_SIZE;
    let r = {
        let f = |i: i64| {
            if i < n / 2 {
                i as f64 / n as f64
            } else {
                (i - n) as f64 / n as f64
            }
        };
        let mut c = [0usize; 3];
        for u in 0..n {
            for v in 0..n {
                let r = (f(u).powi(2) + f(v).powi(2)).sqrt();
                c[if r < 0.125 {
                    0
                } else if r < 0.25 {
                    1
                } else {
                    2
                }] += 1;
            }
        }
        c.map(|x| x as f64 / (n * n) as f64)
    };
    tch::manual_seed(11);
    let w = Tensor::randn([2000, 3, 11, 11], (Kind::Double, Device::Cpu));
    let b = compare::band_energy(&w).unwrap();
    for (got, want) in [b.low, b.mid, b.high].iter().zip(r) {
        assert!((got - want).abs() < 0.01, "{b:?} vs areas {r:?}");
    }
    // Scale does not matter.
    let b2 = compare::band_energy(&(&w * 0.001)).unwrap();
    assert!((b2.high - b.high).abs() < 1e-9);
}

#[test]
fn rms_and_the_dead_rule_by_hand() {
    // Filter 0: all 0.5 -> RMS 0.5. Filter 1: half 0, half 2 -> sqrt(2).
    let mut v = vec![0.5; 12];
    v.extend((0..12).map(|i| if i < 6 { 0.0 } else { 2.0 }));
    let rms = compare::filter_rms(&t(&v, &[2, 3, 2, 2])).unwrap();
    assert!((rms[0] - 0.5).abs() < 1e-12 && (rms[1] - 2f64.sqrt()).abs() < 1e-12);
    // Median of [1, 1, 1, 0.05, 0.2] is 1: threshold 0.1, only 0.05 is dead.
    let (dead, th) = compare::low_rms(&[1.0, 1.0, 1.0, 0.05, 0.2]);
    assert_eq!(dead, vec![3]);
    assert!((th - 0.1).abs() < 1e-12);
    // Even count: median of [0.1, 1, 1, 3] is 1.
    let (dead, _) = compare::low_rms(&[0.01, 1.0, 1.0, 3.0]);
    assert_eq!(dead, vec![0]);
}

fn small(arch: Arch) -> Net {
    tch::manual_seed(2);
    let spec = NetSpec::preset(arch, 0.1, 0.02, 4);
    let mut n = Net::new(spec, Device::Cpu).unwrap();
    n.init(Init::Kaiming);
    n
}

fn set_conv1(net: &Net, f: impl Fn(i64, i64, i64, i64) -> f64, bias: impl Fn(i64) -> f64) {
    let w = net.conv_weight(0);
    let s = w.size();
    let mut v = vec![];
    for o in 0..s[0] {
        for c in 0..s[1] {
            for y in 0..s[2] {
                for x in 0..s[3] {
                    v.push(f(o, c, y, x) as f32);
                }
            }
        }
    }
    let b: Vec<f32> = (0..s[0]).map(|o| bias(o) as f32).collect();
    tch::no_grad(|| {
        let mut w = w.shallow_clone();
        w.copy_(&Tensor::from_slice(&v).view(s.as_slice()));
        let mut bb = net.conv_bias(0).shallow_clone();
        bb.copy_(&Tensor::from_slice(&b));
    });
}

fn set(n: usize, dataset: bool) -> ImageSet {
    ImageSet {
        crops: compare::pink_noise(n, 224, 1).unwrap(),
        source: "test".into(),
        dataset,
        files: vec![],
    }
}

const MEAN: [f64; 3] = [0.5, 0.5, 0.5];

#[test]
fn dead_filters_by_rms_and_by_activity() {
    let net = small(Arch::Zfnet);
    let w0 = net.conv_weight(0).copy();
    // Filter 0: weights near zero (dead by RMS). Filter 1: normal weights but
    // a bias of -1000, so it never fires (dead by activity only).
    set_conv1(
        &net,
        |o, c, y, x| {
            let v = w0.double_value(&[o, c, y, x]);
            if o == 0 {
                v * 1e-4
            } else {
                v
            }
        },
        |o| if o == 1 { -1000.0 } else { 0.0 },
    );
    let side = |s: &ImageSet| compare::side(&net, "t", 1, &pre(), s, &mut |_| Ok(())).unwrap();
    let with = side(&set(3, true));
    assert_eq!(with.low_rms, vec![0]);
    let na = with.never_active.clone().unwrap();
    assert!(na.contains(&1), "{na:?}");
    assert!(with.dead_filters.contains(&0) && with.dead_filters.contains(&1));
    assert_eq!(with.dead_count, with.dead_filters.len());
    // Noise images are not a dataset: activity is reported, not counted.
    let without = side(&set(3, false));
    assert_eq!(without.dead_filters, vec![0]);
    assert!(without.never_active.unwrap().contains(&1));
    // No images: no activity, no aliasing.
    let none = side(&ImageSet {
        crops: vec![],
        source: "none".into(),
        dataset: true,
        files: vec![],
    });
    assert_eq!(none.never_active, None);
    assert_eq!(none.aliasing, None);
    assert_eq!(none.dead_filters, vec![0]);
    // Files read for the activity rule alone (conv1 only, in batches) count
    // like crops: write 40 noise images and an unreadable file.
    let dir = std::env::temp_dir().join(format!("zfvis-compare-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = vec![];
    for (i, img) in compare::pink_noise(40, 224, 4).unwrap().iter().enumerate() {
        let p = dir.join(format!("{i:02}.png"));
        img.save(&p).unwrap();
        files.push(p);
    }
    std::fs::write(dir.join("zz.png"), b"not a png").unwrap();
    files.push(dir.join("zz.png"));
    let mut calls = vec![];
    let from_files = compare::side(
        &net,
        "t",
        1,
        &pre(),
        &ImageSet {
            crops: vec![],
            source: "files".into(),
            dataset: true,
            files,
        },
        &mut |i| {
            calls.push(i);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(from_files.never_active.as_ref().unwrap(), &na);
    assert_eq!(
        from_files.aliasing, None,
        "files feed the activity rule only"
    );
    assert_eq!(calls, vec![32, 41]);
    let _ = std::fs::remove_dir_all(&dir);
    // The filters list is sorted by RMS, highest first; filter 0 comes last.
    assert_eq!(with.filters.last().unwrap().filter, 0);
    assert!(with.filters.windows(2).all(|p| p[0].rms >= p[1].rms));
}

#[test]
fn smooth_filters_alias_less_than_impulses() {
    // AlexNet geometry (stride 4). Smooth Gaussian conv1 filters low-pass the
    // stride-4 grid of the transposed conv; single-pixel (impulse) filters
    // pass its spectral images. The aliasing measure must tell them apart.
    let net = small(Arch::Alexnet);
    let k = net.convs[0].window.k;
    let c = (k - 1) as f64 / 2.0;
    let images = set(2, false);
    let measure = |net: &Net| {
        compare::side(net, "t", 1, &pre(), &images, &mut |_| Ok(()))
            .unwrap()
            .aliasing
            .unwrap()
    };
    set_conv1(
        &net,
        |o, ch, y, x| {
            let s = if (o + ch) % 2 == 0 { 1.0 } else { -0.5 };
            s * (-((y as f64 - c).powi(2) + (x as f64 - c).powi(2)) / 8.0).exp()
        },
        |_| 0.0,
    );
    let smooth = measure(&net);
    set_conv1(
        &net,
        |o, ch, y, x| {
            let s = if (o + ch) % 2 == 0 { 1.0 } else { -0.5 };
            if y as f64 == c && x as f64 == c {
                s
            } else {
                0.0
            }
        },
        |_| 0.0,
    );
    let impulse = measure(&net);
    assert!(smooth < 0.1, "smooth filters: {smooth}");
    assert!(impulse > 0.5, "impulse filters: {impulse}");
}

#[test]
fn pink_noise_is_deterministic_and_low_heavy() {
    let a = compare::pink_noise(2, 64, 9).unwrap();
    let b = compare::pink_noise(2, 64, 9).unwrap();
    assert_eq!(a[0].as_raw(), b[0].as_raw());
    assert_ne!(a[0].as_raw(), a[1].as_raw());
    let x = Tensor::from_slice(a[0].as_raw())
        .view([64, 64, 3])
        .permute([2, 0, 1])
        .to_kind(Kind::Double)
        .unsqueeze(0);
    let x = &x - x.mean(Kind::Double);
    // 1/f amplitude: equal energy per octave, so above 1/8 lies about
    // log(0.7/0.125) / log(0.7/(1/64)) = 0.45 of it; white noise has 0.95.
    let s = compare::share_above(&x, 0.125).unwrap().unwrap();
    assert!((0.3..0.6).contains(&s), "{s}");
}

#[test]
fn filter_tiles_put_the_strongest_first() {
    let net = small(Arch::Zfnet);
    // Filter 5 is all +1, far above the rest: first tile, pure white.
    set_conv1(&net, |o, _, _, _| if o == 5 { 1.0 } else { 0.01 }, |_| 0.0);
    let img: RgbImage = compare::filter_tiles(&net, 56, 8, false).unwrap();
    let k = net.convs[0].window.k as u32;
    let tile = (56 / k) * k;
    let n = net.convs[0].out_c as u32;
    assert_eq!(img.width(), 8 * (tile + 1) + 1);
    assert_eq!(img.height(), n.div_ceil(8) * (tile + 1) + 1);
    assert_eq!(img.get_pixel(1 + tile / 2, 1 + tile / 2).0, [255, 255, 255]);
    // One scale for the layer: the weak filters sit near grey.
    let p = img.get_pixel(tile + 2 + tile / 2, 1 + tile / 2).0;
    assert!(p.iter().all(|&v| (126..=130).contains(&v)), "{p:?}");
    // Stretched per filter: a constant 0.01 filter becomes white too.
    let img = compare::filter_tiles(&net, 56, 8, true).unwrap();
    assert_eq!(
        img.get_pixel(tile + 2 + tile / 2, 1 + tile / 2).0,
        [255, 255, 255]
    );
}

/// The normalisation these tests use (any fixed one will do).
fn pre() -> zfvis_core::preprocess::Preprocess {
    zfvis_core::preprocess::Preprocess {
        input_size: 224,
        resize: 224,
        fit: Default::default(),
        filter: Default::default(),
        mean: MEAN,
        std: MEAN,
        bgr: false,
        grey: false,
    }
}
