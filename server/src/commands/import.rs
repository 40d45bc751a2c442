//! `zfvis import`: a network someone else trained (PyTorch state dict,
//! safetensors or ONNX) as a model folder zfvis serves.

use anyhow::Result;
use std::path::PathBuf;
use zfvis_core::import::{self, ImportOptions};

#[derive(clap::Args)]
pub struct ImportArgs {
    /// The file: .pth/.pt (torch.save, zip format), .safetensors, or .onnx
    #[arg(long)]
    from: PathBuf,
    /// The model folder to write (under the server's --models to serve it)
    #[arg(long)]
    out: PathBuf,
    /// A state dict's layout: torchvision:alexnet, torchvision:vgg11|13|16|19[_bn],
    /// torchvision:resnet18|34|50|101|152, torchvision:resnext50_32x4d|resnext101_32x8d|resnext101_64x4d,
    /// torchvision:wide_resnet50_2|wide_resnet101_2, torchvision:densenet121|161|169|201,
    /// torchvision:googlenet, torchvision:inception_v3, torchvision:mobilenet_v2,
    /// torchvision:mobilenet_v3_small|large, torchvision:mnasnet0_5|0_75|1_0|1_3,
    /// torchvision:efficientnet_b0…b7|efficientnet_v2_s|m|l, torchvision:regnet_x_*|regnet_y_*
    /// (400mf, 800mf, 1_6gf, 3_2gf, 8gf, 16gf, 32gf; y also 128gf),
    /// torchvision:convnext_tiny|small|base|large, torchvision:shufflenet_v2_x0_5|x1_0|x1_5|x2_0,
    /// torchvision:squeezenet1_0|1_1, pytorchcv:zfnet|zfnetb|alexnet, zfnet, alexnet
    /// (ONNX files need none)
    #[arg(long)]
    arch: Option<String>,
    /// zfvis | torchvision | caffe (default: what the layout was trained with;
    /// caffe for ONNX graphs whose input is Caffe's data_0)
    #[arg(long)]
    preprocess: Option<String>,
    /// Channel mean, 0..1 pixels: r,g,b (RGB order), or one value (grey networks)
    #[arg(long, value_parser = parse_rgb)]
    mean: Option<[f64; 3]>,
    /// Channel std, 0..1 pixels: r,g,b (RGB order), or one value (grey networks)
    #[arg(long, value_parser = parse_rgb)]
    std: Option<[f64; 3]>,
    /// A state dict in a layout zfvis does not know: a JSON list of layers in
    /// the manifest's format, naming tensors by the state dict's keys (docs/import.md)
    #[arg(long, conflicts_with = "arch")]
    layers: Option<PathBuf>,
    /// Input side in pixels (default: the graph's, else 224)
    #[arg(long)]
    input_size: Option<i64>,
    /// Side the image is brought to before the centre crop (default: the
    /// input size with --fit squash or for zfvis; else 256/224 of it)
    #[arg(long)]
    resize: Option<i64>,
    /// crop: the shorter side to --resize (aspect kept), as torchvision's
    /// Resize(n); squash: the whole image to --resize x --resize (aspect
    /// ignored), as PIL's img.resize((n, n)); then the centre crop [default: crop]
    #[arg(long)]
    fit: Option<zfvis_core::preprocess::Fit>,
    /// PIL's resampling filter: nearest, box, bilinear, hamming, bicubic,
    /// lanczos [default: bilinear; PIL's img.resize() without one: bicubic]
    #[arg(long)]
    filter: Option<zfvis_core::preprocess::Filter>,
    /// rgb, bgr, or grey (PIL's convert("L"), for 1-channel networks)
    /// [default: the preset's; grey for a 1-channel network]
    #[arg(long)]
    channels: Option<zfvis_core::import::Channels>,
    /// Class names: one a line, or JSON (default for 1000 outputs: ImageNet-1k's)
    #[arg(long)]
    classes: Option<PathBuf>,
}

/// "r,g,b" -> three numbers.
fn parse_rgb(s: &str) -> std::result::Result<[f64; 3], String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("expected r,g,b numbers: {e}"))?;
    if let [one] = v.as_slice() {
        return Ok([*one; 3]);
    }
    v.try_into()
        .map_err(|v: Vec<f64>| format!("expected three numbers r,g,b, got {}", v.len()))
}

pub fn run(a: ImportArgs) -> Result<()> {
    let opts = ImportOptions {
        from: a.from,
        out: a.out,
        arch: a.arch,
        layers: a.layers,
        preprocess: a.preprocess.map(|p| p.parse()).transpose()?,
        mean: a.mean,
        std: a.std,
        input_size: a.input_size,
        resize: a.resize,
        fit: a.fit,
        filter: a.filter,
        channels: a.channels,
        classes: a.classes,
    };
    let m = import::import(&opts)?;
    let spec = m.manifest.spec()?;
    let convs = spec.convs();
    let convs: Vec<&str> = convs.iter().map(|c| c.name.as_str()).collect();
    println!(
        "{}: {} ({} conv layers: {}; {} classes; preprocessing {})",
        m.dir.display(),
        m.manifest.architecture,
        convs.len(),
        convs.join(", "),
        m.manifest.classes.len(),
        m.manifest.preprocess_name(),
    );
    // The pipeline recorded, in words: what every image will go through.
    println!(
        "input: {} px; {}",
        m.manifest.input_size,
        m.manifest.preprocess().describe()
    );
    if let Some(note) = m
        .manifest
        .training
        .as_ref()
        .and_then(|t| t["preprocess_note"].as_str())
    {
        println!("note: {note}");
    }
    Ok(())
}
