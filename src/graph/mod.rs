//! The dependency DAG over nodes, sources and exposures: cycles, ancestry, order.

pub mod selector;

use std::collections::{HashSet, VecDeque};

use rustc_hash::FxHashMap as HashMap;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::error::{DiagKind, Diagnostic};
use crate::manifest::Manifest;

/// Edges point from a parent to the nodes that depend on it.
pub struct Graph {
    pub g: DiGraph<String, ()>,
    pub index: HashMap<String, NodeIndex>,
}

impl Graph {
    pub fn build(m: &Manifest) -> Result<Graph, Diagnostic> {
        let mut g = DiGraph::with_capacity(m.nodes.len() + m.sources.len(), m.nodes.len() * 2);
        let mut index =
            HashMap::with_capacity_and_hasher(m.nodes.len() + m.sources.len(), Default::default());
        for id in m.all_ids() {
            index.insert(id.clone(), g.add_node(id.clone()));
        }
        let mut add = |child: &String, deps: &[String]| {
            let c = index[child];
            for d in deps {
                if let Some(&p) = index.get(d) {
                    g.add_edge(p, c, ());
                }
            }
        };
        for n in m.nodes.values() {
            add(&n.unique_id, &n.depends_on_nodes);
        }
        for e in m.exposures.values() {
            add(&e.unique_id, &e.depends_on_nodes);
        }
        let graph = Graph { g, index };
        graph.check_cycles(m)?;
        Ok(graph)
    }

    fn check_cycles(&self, m: &Manifest) -> Result<(), Diagnostic> {
        if petgraph::algo::toposort(&self.g, None).is_ok() {
            return Ok(());
        }
        for scc in petgraph::algo::tarjan_scc(&self.g) {
            let self_loop = scc.len() == 1 && self.g.contains_edge(scc[0], scc[0]);
            if scc.len() < 2 && !self_loop {
                continue;
            }
            let members: HashSet<NodeIndex> = scc.iter().copied().collect();
            let mut cycle = vec![scc[0]];
            let mut seen = HashSet::from([scc[0]]);
            let mut cur = scc[0];
            loop {
                let next = self
                    .g
                    .neighbors_directed(cur, Direction::Outgoing)
                    .filter(|n| members.contains(n))
                    .min_by_key(|n| (!seen.contains(n) as u8, n.index()))
                    .unwrap_or(scc[0]);
                if seen.contains(&next) {
                    let start = cycle.iter().position(|&c| c == next).unwrap_or(0);
                    cycle = cycle[start..].to_vec();
                    cycle.push(next);
                    break;
                }
                seen.insert(next);
                cycle.push(next);
                cur = next;
            }
            let label = |i: NodeIndex| {
                let id = &self.g[i];
                m.nodes
                    .get(id)
                    .map(|n| n.name.clone())
                    .unwrap_or_else(|| id.clone())
            };
            let chain: Vec<String> = cycle.iter().map(|&i| label(i)).collect();
            let files: Vec<String> = cycle[..cycle.len() - 1]
                .iter()
                .filter_map(|&i| m.nodes.get(&self.g[i]))
                .map(|n| format!("{} ({})", n.name, n.display_path))
                .collect();
            let first = m.nodes.get(&self.g[cycle[0]]);
            let mut d = Diagnostic::new(
                DiagKind::Cycle,
                format!("dependency cycle: {}", chain.join(" -> ")),
            )
            .hint(format!(
                "break the cycle by removing one of these ref() calls: {}",
                files.join(", ")
            ));
            if let Some(n) = first {
                d = d.file(&n.display_path);
            }
            return Err(d);
        }
        Ok(())
    }

    /// Ancestors (`Incoming`) or descendants (`Outgoing`) up to `depth` hops.
    pub fn walk(&self, id: &str, dir: Direction, depth: Option<usize>) -> Vec<String> {
        let Some(&start) = self.index.get(id) else {
            return vec![];
        };
        let mut out = Vec::new();
        let mut seen = HashSet::from([start]);
        let mut q = VecDeque::from([(start, 0usize)]);
        while let Some((n, d)) = q.pop_front() {
            if depth.is_some_and(|max| d >= max) {
                continue;
            }
            for nb in self.g.neighbors_directed(n, dir) {
                if seen.insert(nb) {
                    out.push(self.g[nb].clone());
                    q.push_back((nb, d + 1));
                }
            }
        }
        out
    }

    pub fn parents(&self, id: &str) -> Vec<String> {
        self.neighbors(id, Direction::Incoming)
    }

    pub fn children(&self, id: &str) -> Vec<String> {
        self.neighbors(id, Direction::Outgoing)
    }

    fn neighbors(&self, id: &str, dir: Direction) -> Vec<String> {
        let Some(&i) = self.index.get(id) else {
            return vec![];
        };
        let mut v: Vec<String> = self
            .g
            .neighbors_directed(i, dir)
            .map(|n| self.g[n].clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Unique ids in dependency order (parents first).
    pub fn topo_order(&self) -> Vec<String> {
        petgraph::algo::toposort(&self.g, None)
            .map(|v| v.into_iter().map(|i| self.g[i].clone()).collect())
            .unwrap_or_default()
    }
}
