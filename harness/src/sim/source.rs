//! source-controller: a source's artifact becomes ready and wakes what consumes it.

use super::*;

impl<'a> Simulator<'a> {
    pub(super) fn source_ready(&mut self, s: usize) {
        if self.sources[s].ready_at.is_some() {
            return;
        }
        self.sources[s].ready_at = Some(self.now);
        let (kind, ns, name) =
            (self.sources[s].kind.clone(), self.sources[s].namespace.clone(), self.sources[s].name.clone());
        let msg = if kind == "GitRepository" {
            format!("stored artifact for revision '{}'", self.sim.revision)
        } else {
            "stored artifact: revision 'sha256:4f8e0c2a'".to_string()
        };
        self.log(&kind, &ns, &name, &Cond { status: "True", reason: "Succeeded".into(), message: msg });
        // kustomize-controller and helm-controller watch their sources' artifacts.
        if !self.silenced.contains(&s) {
            for i in 0..self.ks.len() {
                if self.k_source[i] == Some(s) && self.ks[i].exists && !self.ks[i].busy && !self.k_ready(i) {
                    self.queue_k(i, self.now);
                }
            }
        }
        for j in 0..self.hs.len() {
            if self.h_source[j] == Some(s) && self.hs[j].exists {
                let at = self.now + self.sim.chart_fetch_ms;
                self.queue_h(j, at);
            }
        }
    }
}
