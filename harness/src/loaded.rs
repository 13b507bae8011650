//! One loaded repo: the model, the repo's config, the catalogue that config extends and
//! the dependency graph, built once and handed to the rules, the simulator, the simulated
//! cluster and the e2e runner, so they judge the same value instead of each rebuilding
//! (and possibly disagreeing about) its own.

use crate::catalogue::Catalogue;
use crate::config::RepoConfig;
use crate::findings::Finding;
use crate::graph::Graph;
use crate::model::RepoModel;

pub struct Loaded {
    pub model: RepoModel,
    pub config: RepoConfig,
    /// The built-in catalogue extended by the repo config's `catalogue`.
    pub catalogue: Catalogue,
    pub graph: Graph,
    /// What building the graph found: cycles, missing dependencies.
    pub graph_findings: Vec<Finding>,
}

impl Loaded {
    pub fn new(model: RepoModel, config: RepoConfig) -> Self {
        let catalogue = Self::catalogue_of(&config);
        Self::from_parts(model, config, catalogue)
    }

    /// With the catalogue the loader already built from `config`.
    pub fn from_parts(model: RepoModel, config: RepoConfig, catalogue: Catalogue) -> Self {
        let (graph, graph_findings) = crate::graph::analyse(&model);
        Loaded { model, config, catalogue, graph, graph_findings }
    }

    /// The built-in catalogue extended by the repo's own entries.
    pub fn catalogue_of(config: &RepoConfig) -> Catalogue {
        let mut catalogue = Catalogue::builtin();
        catalogue.extend(config.catalogue.clone());
        catalogue
    }
}
