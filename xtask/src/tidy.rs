//! Architecture invariants, checked from the members' `Cargo.toml` files (after
//! rust-analyzer's `tidy.rs`): which crate may depend on which, and the shared lints.
//! `cargo test -p xtask` runs them, and so does `cargo xtask test`.

use std::fmt;

use toml::{Table, Value};

use crate::workspace::{self, Member, read_toml, root};

/// The crates every family builds on, and the programs over them. Every other member whose name
/// starts with `strata-` is a domain crate (a model family: vision, sequence, transformer, ...),
/// so a new family needs no change here.
const LAYERS: &[&str] = &[
    "strata-tensor",
    "strata-data",
    "strata-train",
    "strata-cli",
    "strata-benches",
];
/// The members that are programs; every other member is a library.
const PROGRAMS: &[&str] = &["strata-cli", "xtask"];
/// The members that may depend on xtask.
const XTASK_USERS: &[&str] = &["xtask", "strata-benches"];
/// The dependency tables of a manifest, also found under `[target.'cfg(..)']`.
const SECTIONS: [&str; 3] = ["dependencies", "dev-dependencies", "build-dependencies"];

/// One dependency of a workspace member.
#[derive(Debug)]
struct Dep {
    /// The member's package name.
    from: String,
    /// The package depended on (its real name, also when renamed).
    to: String,
    /// The table it is declared in, e.g. `dev-dependencies`.
    section: String,
    /// True for `[dependencies]` (target-specific too): what the member's users get as well.
    normal: bool,
    /// True when `to` is a workspace member.
    internal: bool,
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} depends on {} [{}]", self.from, self.to, self.section)
    }
}

/// The members of this checkout.
fn members() -> Vec<Member> {
    workspace::members(&root()).expect("the workspace manifests are readable")
}

/// Every dependency of every member, except a member's dependency on itself.
fn all_deps() -> Vec<Dep> {
    let root_manifest = read_toml(&root().join("Cargo.toml")).expect("root Cargo.toml");
    let empty = Table::new();
    let shared = root_manifest
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(Value::as_table)
        .unwrap_or(&empty);
    let members = members();
    let names: Vec<&str> = members.iter().map(Member::name).collect();
    let mut deps: Vec<Dep> = members
        .iter()
        .flat_map(|m| deps_of(m.name(), &m.manifest, shared))
        .filter(|d| d.from != d.to)
        .collect();
    for dep in &mut deps {
        dep.internal = names.contains(&dep.to.as_str());
    }
    deps
}

/// The dependencies declared in `manifest`; `shared` is `[workspace.dependencies]`, where a
/// `workspace = true` entry may be renamed.
fn deps_of(from: &str, manifest: &Table, shared: &Table) -> Vec<Dep> {
    let mut tables = Vec::new();
    for section in SECTIONS {
        tables.push((section.to_string(), section, manifest.get(section)));
    }
    let targets = manifest.get("target").and_then(Value::as_table);
    for (cfg, target) in targets.into_iter().flatten() {
        for section in SECTIONS {
            tables.push((
                format!("target.{cfg}.{section}"),
                section,
                target.get(section),
            ));
        }
    }
    let mut deps = Vec::new();
    for (name, section, table) in tables {
        for (key, spec) in table.and_then(Value::as_table).into_iter().flatten() {
            let from_workspace = spec.get("workspace").and_then(Value::as_bool) == Some(true);
            let renamed = match from_workspace {
                true => shared.get(key).and_then(|s| s.get("package")),
                false => spec.get("package"),
            };
            deps.push(Dep {
                from: from.to_string(),
                to: renamed.and_then(Value::as_str).unwrap_or(key).to_string(),
                section: name.clone(),
                normal: section == "dependencies",
                internal: false,
            });
        }
    }
    deps
}

/// Fails, naming every offending dependency, when `bad` holds for any.
fn forbid(rule: &str, bad: impl Fn(&Dep) -> bool) {
    let offences: Vec<String> = all_deps()
        .iter()
        .filter(|d| bad(d))
        .map(Dep::to_string)
        .collect();
    assert!(
        offences.is_empty(),
        "\n{rule}:\n  {}\n",
        offences.join("\n  ")
    );
}

fn is_domain(name: &str) -> bool {
    name.starts_with("strata-") && !LAYERS.contains(&name)
}

#[test]
fn domain_crates_do_not_depend_on_each_other() {
    forbid(
        "a domain crate depends on another domain crate (move what both need down into strata-tensor, strata-data or strata-train)",
        |d| is_domain(&d.from) && is_domain(&d.to),
    );
}

#[test]
fn strata_tensor_depends_on_no_strata_crate() {
    forbid(
        "strata-tensor depends on a Strata crate (it is the bottom layer)",
        |d| d.from == "strata-tensor" && d.internal,
    );
}

#[test]
fn strata_data_depends_only_on_strata_tensor() {
    forbid(
        "strata-data depends on a Strata crate other than strata-tensor",
        |d| d.from == "strata-data" && d.internal && d.to != "strata-tensor",
    );
}

#[test]
fn strata_train_depends_only_on_strata_tensor_and_strata_data() {
    forbid(
        "strata-train depends on a Strata crate other than strata-tensor and strata-data (it knows no particular model)",
        |d| {
            d.from == "strata-train"
                && d.internal
                && !["strata-tensor", "strata-data"].contains(&d.to.as_str())
        },
    );
}

#[test]
fn libraries_do_not_depend_on_clap() {
    forbid(
        "a library crate depends on clap (command lines belong in strata-cli)",
        |d| !PROGRAMS.contains(&d.from.as_str()) && d.normal && d.to == "clap",
    );
}

#[test]
fn nothing_depends_on_xtask() {
    forbid("a crate depends on xtask (a runner, not a library)", |d| {
        d.to == "xtask" && !XTASK_USERS.contains(&d.from.as_str())
    });
}

#[test]
fn every_crate_uses_the_workspace_lints() {
    let offences: Vec<String> = members()
        .iter()
        .filter(|m| {
            let lints = m.manifest.get("lints");
            lints
                .and_then(|l| l.get("workspace"))
                .and_then(Value::as_bool)
                != Some(true)
        })
        .map(|m| format!("{} ({})", m.name(), m.dir.join("Cargo.toml").display()))
        .collect();
    assert!(
        offences.is_empty(),
        "\nthese crates lack `[lints] workspace = true`:\n  {}\n",
        offences.join("\n  ")
    );
}

#[test]
fn the_rules_see_the_whole_workspace() {
    let deps = all_deps();
    let has = |from: &str, to: &str| deps.iter().any(|d| d.from == from && d.to == to);
    assert!(has("strata-cli", "strata-tensor") && has("strata-cli", "clap"));
    assert!(deps.iter().any(|d| d.internal && d.from == "strata-train"));
    assert!(is_domain("strata-vision") && !is_domain("strata-train"));
    // strata-data's dev-dependency on itself (for its `testing` feature) is no edge.
    assert!(!has("strata-data", "strata-data"));
}

#[test]
fn deps_are_found_in_every_table_under_their_real_name() {
    let manifest: Table = r#"
        [dependencies]
        a = "1"
        b = { workspace = true }
        [dev-dependencies]
        c2 = { package = "c", path = "../c" }
        [target.'cfg(unix)'.dependencies]
        d = "1"
        [target.'cfg(unix)'.build-dependencies]
        e = "1"
    "#
    .parse()
    .unwrap();
    let shared: Table = r#"b = { package = "b-real", version = "1" }"#.parse().unwrap();
    let found: Vec<String> = deps_of("x", &manifest, &shared)
        .iter()
        .map(|d| format!("{} {} {}", d.to, d.section, d.normal))
        .collect();
    assert_eq!(
        found,
        [
            "a dependencies true",
            "b-real dependencies true",
            "c dev-dependencies false",
            "d target.cfg(unix).dependencies true",
            "e target.cfg(unix).build-dependencies false",
        ]
    );
}
