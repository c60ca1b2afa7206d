//! The labelled graph of the memory model: nodes with a label, directed
//! labelled edges between existing nodes. Deleting a node deletes its edges.

use alloc::collections::{BTreeMap, BTreeSet};

use super::ApplyError;
use crate::event::NodeId;
use crate::hash::{Hash32, domain};

#[derive(Clone, Debug, Default)]
pub struct Graph {
    nodes: BTreeMap<NodeId, u64>,
    /// (from, to, label)
    out_edges: BTreeSet<(NodeId, NodeId, u64)>,
    /// (to, from, label), to delete a node's incoming edges.
    in_edges: BTreeSet<(NodeId, NodeId, u64)>,
    cached: Option<Hash32>,
}

impl Graph {
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn edge_count(&self) -> usize {
        self.out_edges.len()
    }

    pub fn node_label(&self, node: NodeId) -> Option<u64> {
        self.nodes.get(&node).copied()
    }

    /// Nodes in id order with their labels.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.nodes.iter().map(|(&n, &l)| (n, l))
    }

    /// Edges `(from, to, label)` in that order.
    pub fn edges(&self) -> impl Iterator<Item = (NodeId, NodeId, u64)> + '_ {
        self.out_edges.iter().copied()
    }

    /// Outgoing edges of `node` as `(to, label)`, ordered.
    pub fn edges_from(&self, node: NodeId) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.out_edges
            .range((node, NodeId(0), 0)..=(node, NodeId(u64::MAX), u64::MAX))
            .map(|&(_, to, label)| (to, label))
    }

    /// Incoming edges of `node` as `(from, label)`, ordered.
    pub fn edges_to(&self, node: NodeId) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.in_edges
            .range((node, NodeId(0), 0)..=(node, NodeId(u64::MAX), u64::MAX))
            .map(|&(_, from, label)| (from, label))
    }

    pub(super) fn check_create_node(&self, node: NodeId) -> Result<(), ApplyError> {
        if self.nodes.contains_key(&node) {
            return Err(ApplyError::NodeExists(node));
        }
        Ok(())
    }

    pub(super) fn check_delete_node(&self, node: NodeId) -> Result<(), ApplyError> {
        if !self.nodes.contains_key(&node) {
            return Err(ApplyError::UnknownNode(node));
        }
        Ok(())
    }

    pub(super) fn check_create_edge(
        &self,
        from: NodeId,
        to: NodeId,
        label: u64,
    ) -> Result<(), ApplyError> {
        self.check_delete_node(from)?;
        self.check_delete_node(to)?;
        if self.out_edges.contains(&(from, to, label)) {
            return Err(ApplyError::EdgeExists { from, to, label });
        }
        Ok(())
    }

    pub(super) fn check_delete_edge(
        &self,
        from: NodeId,
        to: NodeId,
        label: u64,
    ) -> Result<(), ApplyError> {
        if !self.out_edges.contains(&(from, to, label)) {
            return Err(ApplyError::UnknownEdge { from, to, label });
        }
        Ok(())
    }

    pub(super) fn create_node(&mut self, node: NodeId, label: u64) {
        self.nodes.insert(node, label);
        self.cached = None;
    }

    pub(super) fn delete_node(&mut self, node: NodeId) {
        let outgoing: alloc::vec::Vec<(NodeId, u64)> = self.edges_from(node).collect();
        for (to, label) in outgoing {
            self.delete_edge(node, to, label);
        }
        let incoming: alloc::vec::Vec<(NodeId, u64)> = self.edges_to(node).collect();
        for (from, label) in incoming {
            self.delete_edge(from, node, label);
        }
        self.nodes.remove(&node);
        self.cached = None;
    }

    pub(super) fn create_edge(&mut self, from: NodeId, to: NodeId, label: u64) {
        self.out_edges.insert((from, to, label));
        self.in_edges.insert((to, from, label));
        self.cached = None;
    }

    pub(super) fn delete_edge(&mut self, from: NodeId, to: NodeId, label: u64) {
        self.out_edges.remove(&(from, to, label));
        self.in_edges.remove(&(to, from, label));
        self.cached = None;
    }

    /// The graph hash, cached until the graph changes.
    pub fn hash(&mut self) -> Hash32 {
        if let Some(h) = self.cached {
            return h;
        }
        let h = self.hash_uncached();
        self.cached = Some(h);
        h
    }

    /// The graph hash from scratch: nodes in id order, then edges in
    /// `(from, to, label)` order.
    pub fn hash_uncached(&self) -> Hash32 {
        let mut h = blake3::Hasher::new();
        h.update(&[domain::GRAPH]);
        h.update(&(self.nodes.len() as u64).to_le_bytes());
        for (node, label) in &self.nodes {
            h.update(&node.0.to_le_bytes());
            h.update(&label.to_le_bytes());
        }
        h.update(&(self.out_edges.len() as u64).to_le_bytes());
        for (from, to, label) in &self.out_edges {
            h.update(&from.0.to_le_bytes());
            h.update(&to.0.to_le_bytes());
            h.update(&label.to_le_bytes());
        }
        h.finalize().into()
    }
}
