//! Parallel index building: a [`Planner`] that runs the pure per-row
//! candidate search of a chunk on a rayon thread pool. The graph is the same
//! for any thread count because planning reads only the frozen graph and
//! linking stays sequential in row order (see `valori_core::hnsw`).

use rayon::prelude::*;
use valori_core::hnsw::{NodePlan, Planner};

/// Plans on a pool of a fixed number of threads.
#[derive(Debug)]
pub struct RayonPlanner {
    pool: Option<rayon::ThreadPool>,
}

impl RayonPlanner {
    /// A planner on `threads` threads (1 plans on the calling thread).
    pub fn new(threads: usize) -> RayonPlanner {
        let pool = (threads > 1)
            .then(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("valori-index-{i}"))
                    .build()
                    .ok()
            })
            .flatten();
        RayonPlanner { pool }
    }

    /// Threads the planner uses.
    pub fn threads(&self) -> usize {
        self.pool
            .as_ref()
            .map_or(1, rayon::ThreadPool::current_num_threads)
    }
}

impl Planner for RayonPlanner {
    fn plan(&self, count: usize, job: &(dyn Fn(usize) -> NodePlan + Sync)) -> Vec<NodePlan> {
        match &self.pool {
            Some(pool) => pool.install(|| (0..count).into_par_iter().map(job).collect()),
            None => (0..count).map(job).collect(),
        }
    }
}
