//! The command line: xtask's own tasks as clap types, and `--backend` for the `strata` jobs.

use std::env;
use std::ffi::OsString;
use std::fmt;

use anyhow::{Context, Result, bail};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// What `cargo xtask --help` says after the list of tasks.
const JOBS_HELP: &str = "\
Any other TASK is a job of the `strata` binary (train-vision, predict-vision, ...): xtask
builds `strata` with the cargo feature of --backend B (default: STRATA_BACKEND, then flex) and
runs `strata TASK --backend B ARGS...` with the other arguments unchanged.
`cargo xtask <job> --help` shows the job's options.";

/// `cargo xtask`: Strata's task runner.
#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Strata's task runner: builds `strata` with a backend's cargo features and runs its jobs",
    after_help = JOBS_HELP,
    arg_required_else_help = true,
    subcommand_value_name = "TASK",
    subcommand_help_heading = "Tasks"
)]
pub struct Xtask {
    /// The task to run.
    #[command(subcommand)]
    pub task: Task,
}

impl Xtask {
    /// Parses the command line; on a bad one, prints clap's message and exits.
    pub fn from_env() -> Self {
        Self::parse_from(hoist_options(env::args_os().collect()))
    }
}

/// xtask's own tasks; anything else is a `strata` job.
#[derive(Subcommand, Debug)]
pub enum Task {
    /// Run the workspace tests with a backend compiled in, then xtask's own tests.
    Test(Test),
    /// Run a benchmark of `strata bench --list` beside its PyTorch baseline.
    Bench(Bench),
    /// Install PyTorch into ~/.cache/strata/venv (for --backend tch and the baselines).
    SetupLibtorch,
    /// Install the LLVM the cuda backend is built with (PyPI, into ~/.cache/strata).
    SetupCuda,
    /// Build and pack what a GPU machine without Rust needs to test and benchmark there.
    GpuCheck(GpuCheck),
    /// A `strata` job: its name, then its arguments, unparsed.
    #[command(external_subcommand)]
    Job(Vec<String>),
}

/// `cargo xtask test [--backend B] [-- CARGO_TEST_ARGS...]`.
#[derive(Args, Debug)]
pub struct Test {
    #[command(flatten)]
    pub backend: BackendArg,
    /// Extra arguments for `cargo test` (`-- -p strata-vision -- --nocapture`).
    #[arg(last = true, value_name = "CARGO_TEST_ARGS")]
    pub cargo_args: Vec<String>,
}

/// `cargo xtask bench NAME [--backend B] [--format F] [--no-baseline] [ARGS...]`.
#[derive(Args, Debug)]
pub struct Bench {
    /// Benchmark, one of `strata bench --list` (e.g. cnn-train).
    pub name: String,
    #[command(flatten)]
    pub backend: BackendArg,
    /// Output: text lines, or one JSON line with our figure and the baseline's.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Run only our side, without the PyTorch baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Other options, passed to `strata bench` and to the baseline script (e.g. --steps 100).
    #[arg(allow_hyphen_values = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// `cargo xtask gpu-check [--out DIR] [--no-tch]`.
#[derive(Args, Debug)]
pub struct GpuCheck {
    /// Folder (relative to the checkout's root) for the binaries and run.sh.
    #[arg(long, default_value = "gpu-check")]
    pub out: std::path::PathBuf,
    /// Leave out the LibTorch (tch) binary.
    #[arg(long)]
    pub no_tch: bool,
}

/// `--backend B`, shared by the tasks that build with a backend.
#[derive(Args, Debug, Clone, Copy)]
pub struct BackendArg {
    /// Backend whose cargo feature is compiled in [default: STRATA_BACKEND, then flex].
    #[arg(long, value_enum)]
    backend: Option<Backend>,
}

impl BackendArg {
    /// The backend named by `--backend`, else by `STRATA_BACKEND`, else flex.
    pub fn get(self) -> Result<Backend> {
        self.backend.map_or_else(default_backend, Ok)
    }
}

/// A Burn backend, compiled in by the cargo feature of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// Pure Rust on the CPU (the default).
    Flex,
    /// Pure Rust on the CPU (deprecated in Burn 0.22).
    Ndarray,
    /// LibTorch, on the CPU or a CUDA GPU (needs `cargo xtask setup-libtorch`).
    Tch,
    /// NVIDIA GPUs through CubeCL.
    Cuda,
    /// Vulkan / Metal / WebGPU GPUs through CubeCL.
    Wgpu,
    /// Burn's CubeCL CPU backend (kernels compiled with LLVM at run time; needs `cargo xtask
    /// setup-cuda`'s LLVM to build).
    Cpu,
}

impl Backend {
    /// Parses a backend name; the error lists the valid ones.
    pub fn parse(name: &str) -> Result<Self> {
        match Self::from_str(name, false) {
            Ok(backend) => Ok(backend),
            Err(_) => bail!("unknown backend '{name}': choose one of {}", Self::names()),
        }
    }

    /// Every backend's name: "flex, ndarray, ...".
    pub fn names() -> String {
        let names: Vec<String> = Self::value_variants().iter().map(Self::to_string).collect();
        names.join(", ")
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.to_possible_value().expect("no backend is skipped");
        f.write_str(value.get_name())
    }
}

/// How `bench` prints its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per side, for people.
    Text,
    /// One JSON object on the last line, for scripts.
    Json,
}

/// Takes `--backend B` / `--backend=B` out of a job's arguments (the last one wins), falling
/// back to `STRATA_BACKEND`, then flex. Arguments after `--` are left alone.
pub fn take_backend(args: &mut Vec<String>) -> Result<Backend> {
    let mut named = None;
    let mut i = 0;
    while i < args.len() && args[i] != "--" {
        if args[i] == "--backend" {
            if i + 1 == args.len() {
                bail!("--backend needs a value: one of {}", Backend::names());
            }
            named = Some(args.remove(i + 1));
            args.remove(i);
        } else if let Some(name) = args[i].strip_prefix("--backend=") {
            named = Some(name.to_string());
            args.remove(i);
        } else {
            i += 1;
        }
    }
    named.map_or_else(default_backend, |name| Backend::parse(&name))
}

/// The backend named by `STRATA_BACKEND` if set, else flex.
fn default_backend() -> Result<Backend> {
    match env::var("STRATA_BACKEND").ok().filter(|b| !b.is_empty()) {
        Some(name) => Backend::parse(&name).context("STRATA_BACKEND"),
        None => Ok(Backend::Flex),
    }
}

/// Moves a task's own options that come after its pass-through arguments (`bench NAME
/// --steps 5 --format json`) in front of them (`bench --format json NAME --steps 5`): clap
/// hands everything after the first option it does not know to the pass-through arguments.
/// The options are read from the clap types above, so none is named twice.
fn hoist_options(mut argv: Vec<OsString>) -> Vec<OsString> {
    let mut cmd = Xtask::command();
    cmd.build();
    let task = argv.get(1).and_then(|t| t.to_str());
    let Some(task) = task.and_then(|t| cmd.find_subcommand(t)) else {
        return argv; // a job: strata parses its arguments
    };
    // Some(takes a separate value) for an option of the task, None for anything else.
    let own = |token: &str| {
        let (name, attached) = match token.split_once('=') {
            Some((name, _)) => (name, true),
            None => (token, false),
        };
        let arg = task.get_arguments().find(|a| {
            a.get_long().map(|l| format!("--{l}")).as_deref() == Some(name)
                || a.get_short().map(|c| format!("-{c}")).as_deref() == Some(name)
        })?;
        Some(arg.get_action().takes_values() && !attached)
    };
    let (mut hoisted, mut rest) = (Vec::new(), Vec::new());
    let mut tokens = argv.split_off(2).into_iter();
    while let Some(token) = tokens.next() {
        if token == "--" {
            rest.push(token);
            rest.extend(tokens.by_ref());
            break;
        }
        match token.to_str().and_then(own) {
            Some(takes_value) => {
                hoisted.push(token);
                if takes_value {
                    hoisted.extend(tokens.next());
                }
            }
            None => rest.push(token),
        }
    }
    argv.extend(hoisted);
    argv.extend(rest);
    argv
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    fn parse(s: &[&str]) -> Task {
        let argv = ["cargo xtask"].iter().chain(s).map(OsString::from);
        Xtask::try_parse_from(hoist_options(argv.collect()))
            .unwrap()
            .task
    }

    #[test]
    fn backend_flag_is_taken_out_of_the_arguments() {
        let mut a = args(&["--epochs", "1", "--backend", "ndarray", "--seed", "3"]);
        assert_eq!(take_backend(&mut a).unwrap(), Backend::Ndarray);
        assert_eq!(a, args(&["--epochs", "1", "--seed", "3"]));
        let mut a = args(&["--backend=tch"]);
        assert_eq!(take_backend(&mut a).unwrap(), Backend::Tch);
        assert!(a.is_empty());
        let mut a = args(&["--", "--backend", "tch"]);
        take_backend(&mut a).unwrap();
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn unknown_backend_is_refused_with_the_list() {
        let err = take_backend(&mut args(&["--backend", "metal2"]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "unknown backend 'metal2': choose one of flex, ndarray, tch, cuda, wgpu, cpu"
        );
        assert!(take_backend(&mut args(&["--backend"])).is_err());
    }

    #[test]
    fn other_tasks_are_jobs_with_their_arguments_untouched() {
        let Task::Job(job) = parse(&["train-sequence", "--epochs", "1", "--backend=tch"]) else {
            panic!("not a job");
        };
        assert_eq!(
            job,
            args(&["train-sequence", "--epochs", "1", "--backend=tch"])
        );
    }

    #[test]
    fn bench_takes_its_flags_anywhere_and_passes_the_rest_on() {
        let Task::Bench(b) = parse(&[
            "bench",
            "cnn-train",
            "--steps",
            "100",
            "--format",
            "json",
            "--no-baseline",
            "--backend",
            "tch",
            "--batch-size=8",
        ]) else {
            panic!("not bench");
        };
        assert_eq!(b.name, "cnn-train");
        assert_eq!(b.format, Format::Json);
        assert!(b.no_baseline);
        assert_eq!(b.backend.backend, Some(Backend::Tch));
        assert_eq!(b.args, args(&["--steps", "100", "--batch-size=8"]));
        let Task::Bench(b) = parse(&["bench", "cnn-train", "--format=text"]) else {
            panic!("not bench");
        };
        assert_eq!(b.format, Format::Text);
        assert!(!b.no_baseline && b.args.is_empty());
        let bad = Xtask::try_parse_from(["x", "bench", "cnn-train", "--format", "yaml"]);
        assert!(bad.is_err());
        let argv = ["x", "bench", "cnn-train", "--steps", "5", "-h"].map(OsString::from);
        let help = Xtask::try_parse_from(hoist_options(argv.to_vec())).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn test_passes_what_follows_the_double_dash_to_cargo() {
        let Task::Test(t) = parse(&["test", "--backend", "ndarray", "--", "-p", "a", "--", "-q"])
        else {
            panic!("not test");
        };
        assert_eq!(t.backend.backend, Some(Backend::Ndarray));
        assert_eq!(t.cargo_args, args(&["-p", "a", "--", "-q"]));
    }

    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        Xtask::command().debug_assert();
    }
}
