//! The Flux bootstrap harness: everything `cargo xtask` does lives here.
//!
//! Pure logic (no IO, no processes): [`yaml`], [`object`], [`files`] (the trait),
//! [`kustomize`], [`flux`], [`model`], [`graph`], [`catalogue`], [`config`], [`rules`],
//! [`schema`], [`sim`], [`plan`], [`diff`].
//! IO at the edges: [`disk`] reads the repo, [`exec`] owns every child process.

pub mod apiserver;
pub mod builtin;
pub mod catalogue;
pub mod commands;
pub mod config;
pub mod diff;
pub mod disk;
pub mod e2e;
pub mod error;
pub mod exec;
pub mod files;
pub mod findings;
pub mod flux;
pub mod generate;
pub mod graph;
pub mod helmfile;
pub mod junit;
pub mod kustomize;
pub mod labels;
pub mod loaded;
pub mod model;
pub mod net;
pub mod object;
pub mod operator;
pub mod plan;
pub mod revision;
pub mod rules;
pub mod schema;
pub mod sim;
pub mod sops;
pub mod suite;
pub mod yaml;

pub use error::{Error, ErrorKind, Loc, Result};
