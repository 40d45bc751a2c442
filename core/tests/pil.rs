//! Same file, same numbers as PyTorch: zfvis's decoding, resizing and
//! cropping against PIL and torchvision (tests/pil_ref.py in the venv), and
//! whole predictions against PyTorch on PIL-decoded files.

use std::path::{Path, PathBuf};
use zfvis_core::checkpoint::ModelDir;
use zfvis_core::import::{import, ImportOptions};
use zfvis_core::net::Net;
use zfvis_core::preprocess::{self, Preprocess};
use zfvis_core::tch::{Device, Tensor};
use zfvis_dev::testing::{python, root, tempdir};

fn shared() -> PathBuf {
    root().join("../shared/datasets")
}

fn reference(args: &[&str]) {
    python("pil_ref.py", args);
}

fn beagle() -> String {
    shared()
        .join("dog-faces/n02088364_beagle.JPEG")
        .to_string_lossy()
        .into_owned()
}

fn dog_faces() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(shared().join("dog-faces"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "JPEG"))
        .collect();
    v.sort();
    v
}

/// An HWC uint8 array written by numpy, as (height, width, bytes).
fn read_u8(path: &Path) -> (i64, i64, Vec<u8>) {
    let t = Tensor::read_npy(path).unwrap();
    let s = t.size();
    (s[0], s[1], Vec::<u8>::try_from(t.reshape([-1])).unwrap())
}

/// (name, path) of every `*.ext` in `dir`, sorted.
fn named(dir: &Path, ext: &str) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    v.sort();
    v
}

/// Softmax of `net` on each file, through the model's own preprocessing.
fn probs(net: &Net, pre: &Preprocess, files: &[PathBuf]) -> Tensor {
    let xs: Vec<Tensor> = files
        .iter()
        .map(|p| {
            let img = preprocess::decode(&std::fs::read(p).unwrap()).unwrap();
            pre.tensor(&pre.crop(&img))
        })
        .collect();
    let out: Vec<Tensor> = xs
        .chunks(64)
        .map(|c| net.trace(&Tensor::stack(c, 0)).probs())
        .collect();
    Tensor::cat(&out, 0)
}

fn write_list(dir: &Path, files: &[PathBuf]) -> PathBuf {
    let list = dir.join("files.txt");
    let text: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    std::fs::write(&list, text.join("\n")).unwrap();
    list
}

/// Every test here reads ../shared/datasets: `make test` runs them where it
/// is present and names them where it is not (CI requires it).
mod needs_shared {
    use super::*;

    #[test]
    fn jpeg_pixels_equal_pil() {
        let dir = tempdir("jpegs");
        let mut args = vec!["jpegs".to_string(), beagle(), dir.to_string_lossy().into()];
        args.extend(dog_faces().iter().map(|p| p.to_string_lossy().into_owned()));
        reference(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let jpegs = named(&dir, "jpg");
        assert!(jpegs.len() >= 19, "{} files", jpegs.len());
        for (name, path) in &jpegs {
            let img = preprocess::decode(&std::fs::read(path).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let (h, w, want) = read_u8(&dir.join(format!("{name}.npy")));
            assert_eq!(
                (img.width() as i64, img.height() as i64),
                (w, h),
                "{name}: size (EXIF orientation applied as PIL's exif_transpose)"
            );
            let differ = img
                .as_raw()
                .iter()
                .zip(&want)
                .filter(|(a, b)| a != b)
                .count();
            assert_eq!(differ, 0, "{name}: {differ} bytes differ from PIL's");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn truncated_jpeg_is_refused_like_pil() {
        let bytes = std::fs::read(beagle()).unwrap();
        let e = preprocess::decode(&bytes[..bytes.len() / 3]).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn resize_and_centre_crop_equal_torchvision() {
        for (resize, crop) in [(256u32, 224u32), (224, 224)] {
            let dir = tempdir(&format!("resize{resize}"));
            reference(&[
                "resize",
                &beagle(),
                dir.to_str().unwrap(),
                &resize.to_string(),
                &crop.to_string(),
            ]);
            let pre = Preprocess {
                input_size: crop,
                resize,
                fit: Default::default(),
                filter: Default::default(),
                mean: preprocess::MEAN,
                std: preprocess::STD,
                bgr: false,
                grey: false,
            };
            let (mut worst, mut off, mut total) = (0u8, 0usize, 0usize);
            for (name, path) in named(&dir, "png") {
                let img = preprocess::decode(&std::fs::read(&path).unwrap()).unwrap();
                let got = pre.crop(&img);
                let (h, w, want) = read_u8(&dir.join(format!("{name}.npy")));
                assert_eq!((got.width() as i64, got.height() as i64), (w, h), "{name}");
                let differ = got
                    .as_raw()
                    .iter()
                    .zip(&want)
                    .filter(|(a, b)| a != b)
                    .count();
                if differ > 0 {
                    eprintln!("{name}: {differ} values differ");
                }
                for (a, b) in got.as_raw().iter().zip(&want) {
                    worst = worst.max(a.abs_diff(*b));
                }
                off += differ;
                total += want.len();
            }
            eprintln!(
                "resize {resize} crop {crop}: max difference {worst}/255, {:.2}% of values differ",
                100.0 * off as f64 / total as f64
            );
            // The issue asks for 1/255; zfvis resamples as Pillow does, so equal.
            assert_eq!(
                worst, 0,
                "resize {resize}: {off} values differ, by up to {worst}"
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn bundled_zfnet_probabilities_equal_pytorch_on_pil_decoded_jpegs() {
        let model = root().join("models/zfnet-woofnette");
        let m = ModelDir::open(&model).unwrap();
        let net = m.load(None, Device::Cpu).unwrap();
        // Every val JPEG of woofnette (2,000, 100 a class).
        let files = zfvis_core::data::list_images(&shared().join("woofnette/val")).unwrap();
        assert_eq!(files.len(), 2000);
        let dir = tempdir("zfnet");
        let list = write_list(&dir, &files);
        let out = dir.join("probs.npy");
        reference(&[
            "predict",
            model.to_str().unwrap(),
            list.to_str().unwrap(),
            out.to_str().unwrap(),
        ]);
        let want = Tensor::read_npy(&out).unwrap();
        let got = probs(&net, &m.manifest.preprocess(), &files);
        let d = (&got - &want).abs().max().double_value(&[]);
        eprintln!(
            "bundled ZFNet, {} val JPEGs: max |p - p_torch| = {d:.2e}",
            files.len()
        );
        // README: 1.6e-6 measured; checked within 10x.
        assert!(d < 1e-5, "probabilities differ by {d}");
        // Top-5 classes agree wherever the reference's 5th and 6th are apart.
        let (wv, wi) = want.topk(6, -1, true, true);
        let (_, gi) = got.topk(5, -1, true, true);
        for i in 0..files.len() as i64 {
            let gap = wv.double_value(&[i, 4]) - wv.double_value(&[i, 5]);
            if gap > 1e-4 {
                assert!(
                    gi.get(i).equal(&wi.get(i).narrow(0, 0, 5)),
                    "{}: top-5 differs",
                    files[i as usize].display()
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn imported_torchvision_alexnet_equals_its_eval_transform() {
        let dir = tempdir("alexnet");
        let pth = dir.join("alexnet.pth");
        python("import_ref.py", &["save", "alexnet", pth.to_str().unwrap()]);
        let model = dir.join("m");
        let m = import(&ImportOptions {
            from: pth.clone(),
            out: model.clone(),
            arch: Some("torchvision:alexnet".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.manifest.preprocess_name(), "torchvision");
        // Photos of assorted sizes: the dog faces (250x216 to 615x640) and
        // JPEGs of other sizes and kinds made from one of them.
        let jpegs = dir.join("jpegs");
        reference(&["jpegs", &beagle(), jpegs.to_str().unwrap()]);
        let mut files = dog_faces();
        files.extend(named(&jpegs, "jpg").into_iter().map(|(_, p)| p));
        files.retain(|p| !p.to_string_lossy().contains("exif_orientation"));
        let list = write_list(&dir, &files);
        let want_path = dir.join("probs.npy");
        reference(&[
            "alexnet",
            pth.to_str().unwrap(),
            list.to_str().unwrap(),
            want_path.to_str().unwrap(),
        ]);
        let want = Tensor::read_npy(&want_path).unwrap();
        let net = ModelDir::open(&model)
            .unwrap()
            .load(None, Device::Cpu)
            .unwrap();
        let got = probs(&net, &m.manifest.preprocess(), &files);
        let d = (&got - &want).abs().max().double_value(&[]);
        let peak = want.max().double_value(&[]);
        eprintln!(
            "imported AlexNet, {} photos: max |p - p_torch| = {d:.2e} (largest p {peak:.3})",
            files.len()
        );
        // docs/benchmarks.md: 3.9e-6; within 10x of it.
        assert!(d < 3.9e-5, "probabilities differ by {d}");
        assert!(
            got.argmax(-1, false).equal(&want.argmax(-1, false)),
            "top-1 classes differ"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue 26: each of PIL's filters, cropped and squashed, byte for byte.
    #[test]
    fn every_filter_and_fit_equals_pillow() {
        use zfvis_core::preprocess::{Filter, Fit};
        let dir = tempdir("filters");
        reference(&["filters", &beagle(), dir.to_str().unwrap()]);
        let pngs = named(&dir, "png");
        assert!(pngs.len() >= 9, "{} images", pngs.len());
        let mut checked = 0;
        for (name, path) in &pngs {
            let img = preprocess::decode(&std::fs::read(path).unwrap()).unwrap();
            // convert("L"), kept in three channels.
            let (_, _, want) = read_u8(&dir.join(format!("{name}__L.npy")));
            let got: Vec<u8> = preprocess::grey(&img).pixels().map(|p| p.0[0]).collect();
            assert!(got == want, "{name}: convert(\"L\") differs");
            for filter in Filter::ALL {
                for (fit, resize, tag) in [
                    (Fit::Crop, 256, "crop256"),
                    (Fit::Squash, 256, "squash256"),
                    (Fit::Squash, 224, "squash224"),
                ] {
                    let pre = Preprocess {
                        fit,
                        filter,
                        resize,
                        ..Preprocess::imagenet(224)
                    };
                    let got = pre.crop(&img);
                    let (h, w, want) = read_u8(&dir.join(format!("{name}__{filter}__{tag}.npy")));
                    assert_eq!(
                        (got.height() as i64, got.width() as i64),
                        (h, w),
                        "{name} {filter} {tag}"
                    );
                    let differ = got
                        .as_raw()
                        .iter()
                        .zip(&want)
                        .filter(|(a, b)| a != b)
                        .count();
                    let worst = got
                        .as_raw()
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| a.abs_diff(*b))
                        .max();
                    assert_eq!(
                        differ, 0,
                        "{name} {filter} {tag}: {differ} values differ from Pillow's, by up to {worst:?}"
                    );
                    checked += 1;
                }
            }
        }
        eprintln!("{checked} resized crops equal Pillow's byte for byte");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Issue 26: an imported AlexNet fed as the pipelines people ship feed it.
    #[test]
    fn imported_alexnet_equals_the_pipelines_people_ship() {
        use zfvis_core::preprocess::{Filter, Fit};
        let dir = tempdir("pipelines");
        let pth = dir.join("alexnet.pth");
        python("import_ref.py", &["save", "alexnet", pth.to_str().unwrap()]);
        let jpegs = dir.join("jpegs");
        reference(&["jpegs", &beagle(), jpegs.to_str().unwrap()]);
        let mut files = dog_faces();
        files.extend(named(&jpegs, "jpg").into_iter().map(|(_, p)| p));
        files.retain(|p| !p.to_string_lossy().contains("exif_orientation"));
        let list = write_list(&dir, &files);
        let refs = dir.join("refs");
        reference(&[
            "pipelines",
            pth.to_str().unwrap(),
            list.to_str().unwrap(),
            refs.to_str().unwrap(),
        ]);
        #[allow(clippy::type_complexity)]
        let cases: [(
            &str,
            Option<&str>,
            Fit,
            Filter,
            i64,
            Option<[f64; 3]>,
            Option<[f64; 3]>,
        ); 4] = [
            (
                "squash_bicubic",
                None,
                Fit::Squash,
                Filter::Bicubic,
                224,
                None,
                None,
            ),
            (
                "crop_lanczos",
                None,
                Fit::Crop,
                Filter::Lanczos,
                256,
                None,
                None,
            ),
            (
                "keras_nearest",
                None,
                Fit::Squash,
                Filter::Nearest,
                224,
                Some([0.0; 3]),
                Some([1.0; 3]),
            ),
            (
                "caffe",
                Some("caffe"),
                Fit::Squash,
                Filter::Bilinear,
                256,
                None,
                None,
            ),
        ];
        for (name, preset, fit, filter, resize, mean, std) in cases {
            let out = dir.join(format!("m-{name}"));
            let m = import(&ImportOptions {
                from: pth.clone(),
                out: out.clone(),
                arch: Some("torchvision:alexnet".into()),
                preprocess: preset.map(|p| p.parse().unwrap()),
                fit: Some(fit),
                filter: Some(filter),
                resize: Some(resize),
                mean,
                std,
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            // What was recorded is what a reload uses.
            let pre = ModelDir::open(&out).unwrap().manifest.preprocess();
            assert_eq!(
                (pre.fit, pre.filter, pre.resize),
                (fit, filter, resize as u32),
                "{name}"
            );
            let net = m.load(None, Device::Cpu).unwrap();
            let got = probs(&net, &pre, &files);
            let want = Tensor::read_npy(refs.join(format!("{name}.npy"))).unwrap();
            let d = (&got - &want).abs().max().double_value(&[]);
            eprintln!(
                "{name}: {} photos, max |p - p_torch| = {d:.2e}",
                files.len()
            );
            assert!(d < 1e-4, "{name}: probabilities differ by {d}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
