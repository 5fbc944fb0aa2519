//! Dashboards and alarms as code: `agent provision validate | plan | apply`.
//!
//! The definitions are JSON files (`dashboards/*.json`: dashboard bodies; `alerts/*.json`:
//! PutMetricAlarm inputs, one object or a list per file) with `${Name}` placeholders filled
//! per environment from a vars file (`vars`). Loading parses, fills and validates everything
//! offline and reports every problem at once (`validate`); `plan` compares the result with
//! what CloudWatch holds; `apply` makes the calls, serially and paced (`api`).
//!
//! Ownership: every resource gets the name `<Project>-<Environment>-agent-<name>` and only
//! names under that prefix are ever listed, updated or deleted. Terraform names its alarms
//! `<project>-<env>-<api|db|cache>-...`, never `...-agent-...` (a test reads terraform/ to
//! keep it so), so `--prune` cannot reach them.

mod alarm;
mod api;
mod apply;
mod discover;
mod plan;
#[cfg(feature = "preview")]
pub mod preview;
mod validate;
mod vars;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use self::alarm::AlarmSpec;
pub use self::api::{Api, ProvisionError};
pub use self::apply::{Applied, apply};
pub use self::plan::{Action, Change, Current, Kind, Plan, fetch, plan};
pub use self::vars::{DISCOVERABLE, Discovery, Vars};

/// The segment after `<Project>-<Environment>-` that marks what `agent provision` owns.
pub const MARKER: &str = "agent";

/// sysexits.h EX_USAGE: the definitions, vars or flags are wrong.
pub const EX_USAGE: u8 = 64;
/// `plan --detailed-exitcode`: the plan has changes.
pub const EX_CHANGES: u8 = 2;

/// `agent provision ...`
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check the definitions offline (no AWS call): JSON syntax, dashboard and alarm rules,
    /// placeholders, metric names; every problem at once, exit 64 if any.
    Validate {
        #[command(flatten)]
        inputs: Inputs,
    },
    /// Compare the definitions with CloudWatch and print what apply would do.
    Plan {
        #[command(flatten)]
        inputs: Inputs,
        #[command(flatten)]
        target: Target,
        /// Also plan deleting managed resources that no file defines any more.
        #[arg(long)]
        prune: bool,
        /// Exit 2 when the plan has changes (0: none, 1: failure, 64: invalid).
        #[arg(long)]
        detailed_exitcode: bool,
        /// Also draw each dashboard the plan creates or updates, current and new side by
        /// side, as DIR/<name>.html and DIR/<name>.png.
        #[arg(long, value_name = "DIR")]
        preview: Option<PathBuf>,
    },
    /// Draw each dashboard as a self-contained HTML page and a PNG, with data from
    /// CloudWatch (or with --offline from the files alone), plus an index page.
    Preview {
        #[command(flatten)]
        inputs: Inputs,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        args: PreviewArgs,
    },
    /// Plan, then create, update (and with --prune delete) serially, backing off when
    /// throttled.
    Apply {
        #[command(flatten)]
        inputs: Inputs,
        #[command(flatten)]
        target: Target,
        /// Delete managed resources that no file defines any more.
        #[arg(long)]
        prune: bool,
    },
}

/// Where the definitions and their variables come from.
#[derive(Debug, Clone, clap::Args)]
pub struct Inputs {
    /// Directory of dashboard bodies (*.json; the file name is the dashboard's name).
    #[arg(long, default_value = "dashboards")]
    pub dashboards: PathBuf,
    /// Directory of alarm definitions (*.json: one alarm object or a list of them).
    #[arg(long, default_value = "alerts")]
    pub alerts: PathBuf,
    /// Environment: reads provision/ENV.json (unless --vars) and sets Environment=ENV.
    #[arg(long, value_name = "ENV", required_unless_present = "vars")]
    pub env: Option<String>,
    /// The vars file (a JSON object of strings).
    #[arg(long, value_name = "FILE")]
    pub vars: Option<PathBuf>,
    /// A variable, overriding the vars file (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// The preview's own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct PreviewArgs {
    /// Directory the pages and PNGs are written to (created if missing).
    #[arg(long, value_name = "DIR", default_value = "target/dashboard-preview")]
    pub out: PathBuf,
    /// How far back the drawn data goes: 30m, 3h, 2d (seconds without a unit).
    #[arg(long, value_name = "DURATION", default_value = "3h", value_parser = parse_since)]
    pub since: u64,
    /// Draw from the files alone (layout, titles, legends; no AWS call): byte-stable output.
    #[arg(long)]
    pub offline: bool,
    /// Only this dashboard (its file name without .json; repeatable).
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,
}

/// `30m`, `3h`, `2d`, `90s` or `600` → seconds.
fn parse_since(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: a number and a unit: 30m, 3h, 2d"))?;
    let seconds = match unit {
        "" | "s" => value,
        "m" => value * 60,
        "h" => value * 3600,
        "d" => value * 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    if !(60..=15 * 86_400).contains(&seconds) {
        return Err(format!("{text:?}: between 1m and 15d"));
    }
    Ok(seconds)
}

/// Which CloudWatch to talk to.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Target {
    /// AWS Region (default: the Region variable, else the environment).
    #[arg(long)]
    pub region: Option<String>,
    /// Endpoint override (default: AWS_ENDPOINT_URL_CLOUDWATCH, else AWS_ENDPOINT_URL, else the
    /// Region's).
    #[arg(long)]
    pub endpoint: Option<String>,
}

/// Where in which file a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The file as a whole.
    File,
    /// A JSON syntax error (1-based line and column).
    LineColumn(usize, usize),
    /// A JSON path such as `$.widgets[2].properties.region`.
    Path(String),
}

/// One reason the definitions cannot be provisioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file, as given on the command line (or `--var` for a flag).
    pub file: String,
    /// Where in it.
    pub location: Location,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Location::File => write!(f, "{}: {}", self.file, self.message),
            Location::LineColumn(line, column) => {
                write!(f, "{}:{line}:{column}: {}", self.file, self.message)
            }
            Location::Path(path) => write!(f, "{}: {path}: {}", self.file, self.message),
        }
    }
}

/// A dashboard as it will be put.
#[derive(Debug, Clone, PartialEq)]
pub struct DashboardDef {
    /// Full name: prefix + file stem.
    pub name: String,
    /// The defining file.
    pub file: String,
    /// The body, placeholders filled.
    pub body: Value,
}

/// An alarm as it will be put.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmDef {
    /// The defining file.
    pub file: String,
    /// The PutMetricAlarm input, placeholders filled, `AlarmName` prefixed.
    pub spec: AlarmSpec,
}

/// Everything one environment defines.
#[derive(Debug, Clone)]
pub struct Definitions {
    /// `<Project>-<Environment>-agent-`: every managed name starts with it.
    pub prefix: String,
    /// The `Region` variable, if set.
    pub region: Option<String>,
    /// Dashboards, by file name order.
    pub dashboards: Vec<DashboardDef>,
    /// Alarms, by file name order.
    pub alarms: Vec<AlarmDef>,
    /// Placeholders left unfilled for `plan` and `apply` to find ([`Discovery::Deferred`]):
    /// `AccountId`, `Region`.
    pub unfilled: BTreeSet<String>,
}

/// Reads, fills and validates every definition; all problems at once. Every placeholder
/// must be filled.
pub fn load(inputs: &Inputs) -> Result<Definitions, Vec<Problem>> {
    load_with(inputs, &Discovery::Strict)
}

/// [`load`], with `discovery` saying what becomes of `${AccountId}` and `${Region}` when
/// the vars leave them out.
pub fn load_with(inputs: &Inputs, discovery: &Discovery) -> Result<Definitions, Vec<Problem>> {
    let mut problems = Vec::new();
    let vars_file = inputs.vars.clone().or_else(|| {
        inputs
            .env
            .as_ref()
            .map(|env| Path::new("provision").join(format!("{env}.json")))
    });
    let vars = Vars::load(
        vars_file.as_deref(),
        inputs.env.as_deref(),
        &inputs.overrides,
        &mut problems,
    )
    .discover(discovery);
    let prefix = vars.prefix(&mut problems);
    let namespace = vars
        .get("Namespace")
        .unwrap_or(crate::config::MetricsConfig::default().namespace.as_str())
        .to_owned();
    let prefix_or_placeholder = prefix.clone().unwrap_or_default();

    let mut unfilled = BTreeSet::new();
    let mut dashboards = Vec::new();
    for (file, text) in json_files(&inputs.dashboards, &mut problems) {
        let Some(mut body) = parse(&file, &text, &mut problems) else {
            continue;
        };
        vars.fill(&mut body, &file, &mut problems);
        deferred(&body, &mut unfilled);
        let mut check = validate::Checker::new(&file, &namespace, &mut problems);
        validate::dashboard(&mut check, &body);
        let stem = Path::new(&file)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let name = format!("{prefix_or_placeholder}{stem}");
        validate::dashboard_name(&mut check, stem, &name);
        dashboards.push(DashboardDef { name, file, body });
    }

    let mut alarms = Vec::new();
    for (file, text) in json_files(&inputs.alerts, &mut problems) {
        let Some(mut value) = parse(&file, &text, &mut problems) else {
            continue;
        };
        vars.fill(&mut value, &file, &mut problems);
        deferred(&value, &mut unfilled);
        let items: Vec<(String, Value)> = match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("$[{i}]"), v))
                .collect(),
            other => vec![("$".to_owned(), other)],
        };
        for (path, item) in items {
            let mut check = validate::Checker::new(&file, &namespace, &mut problems);
            if !validate::alarm(&mut check, &path, &item, &prefix_or_placeholder) {
                continue;
            }
            match serde_json::from_value::<AlarmSpec>(item) {
                Ok(mut spec) => {
                    spec.alarm_name = format!("{prefix_or_placeholder}{}", spec.alarm_name);
                    alarms.push(AlarmDef {
                        file: file.clone(),
                        spec,
                    });
                }
                Err(error) => problems.push(Problem {
                    file: file.clone(),
                    location: Location::Path(path),
                    message: error.to_string(),
                }),
            }
        }
    }

    duplicates(
        dashboards.iter().map(|d| (&d.name, &d.file)),
        "dashboard",
        &mut problems,
    );
    duplicates(
        alarms.iter().map(|a| (&a.spec.alarm_name, &a.file)),
        "alarm",
        &mut problems,
    );
    match prefix {
        Some(prefix) if problems.is_empty() => Ok(Definitions {
            prefix,
            region: vars.get("Region").map(str::to_owned),
            dashboards,
            alarms,
            unfilled,
        }),
        _ => Err(problems),
    }
}

/// Adds the placeholders still in the strings of `value` (after filling, only deferred ones
/// are left) to `names`.
fn deferred(value: &Value, names: &mut BTreeSet<String>) {
    match value {
        Value::String(text) => {
            names.extend(vars::placeholders(text).into_iter().map(str::to_owned))
        }
        Value::Array(items) => items.iter().for_each(|item| deferred(item, names)),
        Value::Object(map) => map.values().for_each(|item| deferred(item, names)),
        _ => {}
    }
}

fn duplicates<'a>(
    names: impl Iterator<Item = (&'a String, &'a String)>,
    what: &str,
    problems: &mut Vec<Problem>,
) {
    let mut seen: std::collections::BTreeMap<&String, &String> = Default::default();
    for (name, file) in names {
        if let Some(first) = seen.insert(name, file) {
            problems.push(Problem {
                file: file.clone(),
                location: Location::File,
                message: format!("{what} {name} is also defined in {first}"),
            });
        }
    }
}

/// The `*.json` files of `dir`, sorted, with their text.
fn json_files(dir: &Path, problems: &mut Vec<Problem>) -> Vec<(String, String)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(Problem {
                file: dir.display().to_string(),
                location: Location::File,
                message: format!("cannot read the directory: {error}"),
            });
            return Vec::new();
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let file = path.display().to_string();
            match std::fs::read_to_string(&path) {
                Ok(text) => Some((file, text)),
                Err(error) => {
                    problems.push(Problem {
                        file,
                        location: Location::File,
                        message: format!("cannot read: {error}"),
                    });
                    None
                }
            }
        })
        .collect()
}

/// Parses JSON, reporting a syntax error with its line and column.
fn parse(file: &str, text: &str, problems: &mut Vec<Problem>) -> Option<Value> {
    match serde_json::from_str(text) {
        Ok(value) => Some(value),
        Err(error) => {
            let message = error.to_string();
            // serde_json appends " at line L column C"; the location goes in front instead.
            let message = message
                .rsplit_once(" at line ")
                .map_or(message.as_str(), |(m, _)| m)
                .to_owned();
            problems.push(Problem {
                file: file.to_owned(),
                location: Location::LineColumn(error.line(), error.column()),
                message: format!("invalid JSON: {message}"),
            });
            None
        }
    }
}

/// Runs a provision command, writing the report to `out` and problems to `err`; returns
/// the exit code (0, 1 failure, 2 changes with `--detailed-exitcode`, 64 invalid).
pub fn run(command: Command, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let (inputs, target, prune, detailed, mode, preview_dir) = match command {
        Command::Validate { inputs } => {
            return match load_with(&inputs, &Discovery::Deferred) {
                Ok(definitions) => {
                    let _ = writeln!(
                        out,
                        "ok: {} dashboards, {} alarms, all named {}*",
                        definitions.dashboards.len(),
                        definitions.alarms.len(),
                        definitions.prefix
                    );
                    0
                }
                Err(problems) => report_problems(&problems, err),
            };
        }
        #[cfg(feature = "preview")]
        Command::Preview {
            inputs,
            target,
            args,
        } => return preview::run(&inputs, &target, &args, out, err),
        #[cfg(not(feature = "preview"))]
        Command::Preview { .. } => return without_preview(err),
        Command::Plan {
            inputs,
            target,
            prune,
            detailed_exitcode,
            preview,
        } => (
            inputs,
            target,
            prune,
            detailed_exitcode,
            Mode::Plan,
            preview,
        ),
        Command::Apply {
            inputs,
            target,
            prune,
        } => (inputs, target, prune, false, Mode::Apply, None),
    };
    #[cfg(not(feature = "preview"))]
    let _ = &preview_dir;
    // Everything is checked offline first: invalid input sends nothing, not even to STS.
    let definitions = match load_with(&inputs, &Discovery::Deferred) {
        Ok(definitions) => definitions,
        Err(problems) => return report_problems(&problems, err),
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        let _ = writeln!(err, "agent provision: cannot start the runtime");
        return 1;
    };
    runtime.block_on(async {
        let region = target.region.clone().or_else(|| definitions.region.clone());
        let region = region.as_deref();
        let definitions = match complete(&inputs, definitions, region, out, err).await {
            Ok(definitions) => definitions,
            Err(code) => return code,
        };
        let mut api = Api::new(region, target.endpoint.as_deref()).await;
        let current = match fetch(&mut api, &definitions).await {
            Ok(current) => current,
            Err(error) => {
                let _ = writeln!(err, "agent provision: {error}");
                return 1;
            }
        };
        let plan = plan(&definitions, &current, prune);
        let _ = write!(out, "{plan}");
        #[cfg(feature = "preview")]
        if let Some(dir) = &preview_dir
            && let Err(error) =
                preview::plan_preview(dir, &definitions, &current.dashboards, &plan, &target, out)
                    .await
        {
            let _ = writeln!(err, "agent provision plan --preview: {error}");
            return 1;
        }
        match mode {
            Mode::Plan => u8::from(detailed && plan.has_changes()) * EX_CHANGES,
            Mode::Apply => match apply(&mut api, &definitions, &plan, out).await {
                Ok(applied) => {
                    let _ = writeln!(out, "{applied}");
                    0
                }
                Err(error) => {
                    let _ = writeln!(err, "agent provision: {error}");
                    1
                }
            },
        }
    })
}

/// `definitions` loaded again with what discovery finds for the placeholders the vars left
/// unfilled (`AccountId` from STS, `Region` from the client's configuration, whose STS
/// endpoint comes from the environment), each found value said on `out`. Err: the exit code.
async fn complete(
    inputs: &Inputs,
    definitions: Definitions,
    region: Option<&str>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Definitions, u8> {
    if definitions.unfilled.is_empty() {
        return Ok(definitions);
    }
    let sts = crate::sinks::sdk_config(region, None, api::CALL_TIMEOUT).await;
    let found = discover::discover(&definitions.unfilled, &sts)
        .await
        .map_err(|error| {
            let _ = writeln!(err, "agent provision: {error}");
            1
        })?;
    for (name, value) in &found {
        let _ = writeln!(
            out,
            "{name} = {value} (not in the vars: found with the AWS credentials)"
        );
    }
    load_with(inputs, &Discovery::Found(found)).map_err(|problems| report_problems(&problems, err))
}

/// Previews draw with resvg, which costs the sidecar binary about 3 MiB and its idle RSS
/// about 2 MiB; only builds with `--features preview` carry it.
#[cfg(not(feature = "preview"))]
fn without_preview(err: &mut dyn Write) -> u8 {
    let _ = writeln!(
        err,
        "agent provision: previews are not in this build of the agent (the sidecar leaves them \
         out); build it with `cargo build -p agent --features preview`"
    );
    EX_USAGE
}

enum Mode {
    Plan,
    Apply,
}

fn report_problems(problems: &[Problem], err: &mut dyn Write) -> u8 {
    for problem in problems {
        let _ = writeln!(err, "{problem}");
    }
    let _ = writeln!(
        err,
        "agent provision: {} problem{}; nothing was sent",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    EX_USAGE
}
