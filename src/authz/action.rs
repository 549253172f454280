//! [`Action`]: what a request asks to do, as policies name it.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SecretsRead,
    SecretsWrite,
    SecretsRotate,
    SecretsAdmin,
    SecretsReadBreakGlass,
    PolicyAdmin,
    ClusterAdmin,
    AuditRead,
    DrillRun,
    /// Node health: allowed to anyone, token or not (load balancers), and still audited.
    Health,
}

impl Action {
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::SecretsRead => "secrets:read",
            Action::SecretsWrite => "secrets:write",
            Action::SecretsRotate => "secrets:rotate",
            Action::SecretsAdmin => "secrets:admin",
            Action::SecretsReadBreakGlass => "secrets:read-break-glass",
            Action::PolicyAdmin => "policy:admin",
            Action::ClusterAdmin => "cluster:admin",
            Action::AuditRead => "audit:read",
            Action::DrillRun => "drill:run",
            Action::Health => "health:read",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Action {
    /// Actions on secrets: their resource is a secret name (or a list prefix).
    pub fn on_secrets(&self) -> bool {
        matches!(
            self,
            Action::SecretsRead
                | Action::SecretsWrite
                | Action::SecretsRotate
                | Action::SecretsAdmin
                | Action::SecretsReadBreakGlass
        )
    }
}
