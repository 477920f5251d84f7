//! A model: the IR plus its parameter store.

use crate::error::Result;
use crate::ir::Graph;
use crate::params::{init_params, ParamStore};
use crate::shapes::{cost, infer_shapes, Cost};
use rand::SeedableRng;

/// A graph and its tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub graph: Graph,
    pub params: ParamStore,
}

impl Model {
    /// A model with freshly initialized parameters (seeded).
    pub fn init(graph: Graph, seed: u64) -> Result<Self> {
        infer_shapes(&graph)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let params = init_params(&graph, &mut rng);
        Ok(Self { graph, params })
    }

    /// Validates the graph's shapes and that every parameter is present with
    /// the expected shape.
    pub fn validate(&self) -> Result<()> {
        infer_shapes(&self.graph)?;
        self.params.validate(&self.graph)
    }

    /// Parameters and FLOPs per layer and in total.
    pub fn cost(&self) -> Result<Cost> {
        cost(&self.graph)
    }
}
