//! `zfvis invariance`: translation, scale and rotation curves (paper Fig. 5).

use super::args::{ImageArgs, Output};
use super::local::Local;
use anyhow::Result;
use zfvis_core::analyses::invariance::{CurvesRequest, Invariance};
use zfvis_core::analysis::Analysis;
use zfvis_core::invariance::InvarianceResult;

#[derive(clap::Args)]
pub struct InvarianceArgs {
    #[command(flatten)]
    input: ImageArgs,
    /// Points per transform (the identity is always one of them)
    #[arg(long, default_value_t = 13)]
    steps: usize,
    /// Class whose probability is plotted (default: the top class)
    #[arg(long)]
    class: Option<i64>,
    #[command(flatten)]
    output: Output,
    /// Write CSV instead of the table
    #[arg(long)]
    csv: bool,
}

pub fn run(a: InvarianceArgs) -> Result<()> {
    let mut l = Local::open(&a.input.model)?;
    let (model, epoch, image) = l.subject(&a.input.image)?;
    let req = CurvesRequest {
        model,
        epoch,
        image,
        steps: a.steps,
        class: a.class,
    };
    let r = Invariance::run(&mut l.engine, &req)?;
    if a.csv && !a.output.json {
        print!("{}", r.to_csv());
        return Ok(());
    }
    a.output
        .print(&r, || print_table(&r, l.class_name(r.class)))
}

fn print_table(r: &InvarianceResult, class_name: &str) {
    println!("class {} ({class_name})", r.class);
    for (name, c) in [
        ("translate", &r.translate),
        ("scale", &r.scale),
        ("rotate", &r.rotate),
    ] {
        println!(
            "{name:>9} {:>9} {:>11} {:>11} {:>7}",
            "value", "dist L1", "dist L7", "p"
        );
        for i in 0..c.values.len() {
            println!(
                "{:>9} {:>9.2} {:>11.3} {:>11.3} {:>7.3}",
                "", c.values[i], c.dist_layer1[i], c.dist_layer7[i], c.prob[i]
            );
        }
    }
}
