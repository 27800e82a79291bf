//! What an activation must respect, resolved from a license and its policy, and why one can be
//! refused. The store enforces these under the license's lock; `domain::activation` resolves them.

use uuid::Uuid;

/// Where a fingerprint must be unique, per the policy's machine uniqueness strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    Account,
    Product(Uuid),
    Policy(Uuid),
    License,
}

/// The limits an activation must respect, already resolved from license and policy.
#[derive(Debug, Clone)]
pub struct ActivationLimits {
    /// Highest machine count allowed after this activation (overage included); `None` = no limit.
    pub max_machines: Option<i64>,
    /// Highest core sum allowed after this activation; `None` = no limit.
    pub max_cores: Option<i64>,
    /// Highest memory and disk sums allowed after this activation; `None` = no limit.
    pub max_memory: Option<i64>,
    pub max_disk: Option<i64>,
    /// The machine's group and the most machines it may hold.
    pub group_machines: Option<(Uuid, i64)>,
    /// Count only machines with this owner (PER_USER leasing).
    pub per_owner: bool,
    pub uniqueness: Uniqueness,
    /// Where component fingerprints must be unique; `None` = per machine.
    pub component_uniqueness: Option<Uniqueness>,
    /// A license token whose `maxActivations` this activation counts against.
    pub activation_token: Option<Uuid>,
}

/// Why an activation was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum ActivationRefusal {
    MachineLimit,
    CoreLimit,
    MemoryLimit,
    DiskLimit,
    GroupMachineLimit,
    FingerprintTaken,
    /// The component at this index of the request holds a fingerprint already taken.
    ComponentFingerprintTaken(usize),
    ActivationsLimit,
}
