//! What a client of the simulated API server changes on Flux's objects, acted on as Flux's
//! controllers act on it: `spec.suspend` (`flux suspend` / `flux resume`) and the
//! `reconcile.fluxcd.io/requestedAt` annotation (`flux reconcile`). The driver reads them
//! from the served store; the simulator keeps them over the repo's spec.

use super::*;

impl Simulator<'_> {
    /// Changes whenever [`Simulator::cluster_objects`] may: a consumer polling the
    /// simulator rebuilds the objects only when this differs from last time.
    pub fn version(&self) -> (u64, u64, u64) {
        (self.handled, self.now, self.client_edits)
    }

    /// Suspended, by the repo or by a client.
    pub(super) fn k_suspended(&self, i: usize) -> bool {
        self.ks[i].suspended.unwrap_or(self.model.kustomizations[i].spec.suspend)
    }

    /// A Kustomization as a client left it in the API server, at virtual time `at`: a
    /// change of `spec.suspend`, a new reconcile request. A resumed or requested one
    /// reconciles now, even after the bootstrap converged.
    pub fn client_edit(&mut self, namespace: &str, name: &str, suspend: bool, requested: Option<&str>, at: u64) {
        let r = Ref { kind: "Kustomization".into(), namespace: namespace.into(), name: name.into() };
        let Some(i) = self.find_k(&r) else { return };
        let mut wake = false;
        if suspend != self.k_suspended(i) {
            self.ks[i].suspended = Some(suspend);
            self.client_edits += 1;
            self.ready_below.0 = self.ready_below.0.min(i);
            wake = !suspend;
        }
        // A suspended Kustomization handles no request (Flux leaves lastHandledReconcileAt).
        if let Some(token) = requested
            && self.ks[i].handled_request.as_deref() != Some(token)
            && !self.k_suspended(i)
        {
            self.ks[i].handled_request = Some(token.to_string());
            self.client_edits += 1;
            wake = true;
        }
        if wake && !self.k_suspended(i) {
            // Time moves on from where the client's request came in.
            self.now = self.now.max(at);
            self.converged_at = None;
            self.ks[i].next_at = None;
            self.queue_k(i, self.now);
        }
    }

    /// What a client set, as the object shows it (`spec.suspend`,
    /// `status.lastHandledReconcileAt`).
    pub(super) fn client_fields(&self, i: usize, o: &mut serde_json::Value) {
        if let Some(s) = self.ks[i].suspended {
            o["spec"]["suspend"] = serde_json::Value::Bool(s);
        }
        if let Some(t) = &self.ks[i].handled_request {
            o["status"]["lastHandledReconcileAt"] = serde_json::Value::String(t.clone());
        }
    }
}
