//! `--recipe FILE` for `train` and `prune`: the recipe's settings fill in
//! every flag not given on the command line (clap's `value_source` tells
//! which were), the merged command line is parsed again, and the settings
//! the run uses are written to `recipe.toml` in its run directory.

use crate::args::Cli;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use prune_nn::recipe::{Recipe, Setting, Source};
use prune_nn::Result;
use std::ffi::OsString;
use std::path::PathBuf;

/// What the run directory's resolved recipe is made of.
pub struct Resolved {
    pub command: String,
    pub out: PathBuf,
    pub recipe: Option<Recipe>,
    pub settings: Vec<Setting>,
}

impl Resolved {
    /// Writes `recipe.toml` into the run directory.
    pub fn write(&self) -> Result<()> {
        prune_nn::recipe::write_resolved(
            &self.out,
            &self.command,
            self.recipe.as_ref(),
            &self.settings,
        )?;
        Ok(())
    }
}

/// Parses the process's command line, applying a recipe where one is named.
/// Clap's own errors (and --help) exit the process as usual.
pub fn parse() -> Result<(Cli, Option<Resolved>)> {
    parse_from(std::env::args_os().collect())
}

/// [`parse`] over an explicit argument list.
pub fn parse_from(argv: Vec<OsString>) -> Result<(Cli, Option<Resolved>)> {
    // First pass: with a recipe, required flags may come from it, so none
    // is required yet; this pass only finds the recipe and the given flags.
    let has_recipe = argv
        .iter()
        .any(|a| a.to_string_lossy().starts_with("--recipe"));
    let mut first_cmd = Cli::command();
    if has_recipe {
        first_cmd = first_cmd
            .mut_subcommand("train", |s| s.mut_args(|a| a.required(false)))
            .mut_subcommand("prune", |s| s.mut_args(|a| a.required(false)));
    }
    let first = first_cmd
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| e.exit());
    let Some((command, sub)) = first.subcommand() else {
        return Ok((finish(&argv), None));
    };
    if !prune_nn::recipe::COMMANDS.contains(&command) {
        return Ok((finish(&argv), None));
    }
    let command = command.to_string();
    let known = known_flags(&command);
    let given = |k: &str| sub.value_source(k) == Some(ValueSource::CommandLine);
    let recipe = match sub.get_one::<PathBuf>("recipe") {
        Some(p) => Some(Recipe::load(p)?),
        None => None,
    };
    let mut argv = argv;
    let mut from_recipe = Vec::new();
    if let Some(r) = &recipe {
        let (tokens, set) = r.tokens(&command, &known, given)?;
        argv.extend(tokens.into_iter().map(OsString::from));
        from_recipe = set;
    }
    let matches = Cli::command()
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| e.exit());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let Some((_, sub)) = matches.subcommand() else {
        return Ok((cli, None));
    };
    let settings = settings(sub, &command, &from_recipe);
    let out = sub.get_one::<PathBuf>("out").cloned();
    let resolved = out.map(|out| Resolved {
        command,
        out,
        recipe,
        settings,
    });
    Ok((cli, resolved))
}

fn finish(argv: &[OsString]) -> Cli {
    use clap::Parser;
    Cli::try_parse_from(argv).unwrap_or_else(|e| e.exit())
}

/// The long flags of a subcommand, snake_case (clap's argument ids).
fn known_flags(command: &str) -> Vec<String> {
    let cmd = Cli::command();
    cmd.find_subcommand(command)
        .map(|s| {
            s.get_arguments()
                .filter(|a| a.get_long().is_some() && a.get_id() != "recipe")
                .map(|a| a.get_id().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Every flag of the subcommand that has a value, with its source.
fn settings(sub: &ArgMatches, command: &str, from_recipe: &[String]) -> Vec<Setting> {
    let cmd = Cli::command();
    let Some(sc) = cmd.find_subcommand(command) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for arg in sc.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "recipe" || arg.get_long().is_none() {
            continue;
        }
        let source = match sub.value_source(id) {
            Some(ValueSource::CommandLine) if from_recipe.iter().any(|k| k == id) => Source::Recipe,
            Some(ValueSource::CommandLine) | Some(ValueSource::EnvVariable) => Source::CommandLine,
            Some(_) => Source::Default,
            None => continue,
        };
        let switch = !arg.get_action().takes_values();
        let values: Vec<String> = if switch {
            if sub.get_flag(id) {
                vec![]
            } else {
                continue;
            }
        } else {
            match sub.get_raw(id) {
                Some(raw) => raw.map(|v| v.to_string_lossy().into_owned()).collect(),
                None => continue,
            }
        };
        let list = arg.get_value_delimiter().is_some();
        out.push(Setting {
            key: id.to_string(),
            values,
            list,
            switch,
            source,
        });
    }
    out
}
