//! What an activation must respect, resolved from a license and its policy, and why one can be
//! refused. `domain::activation` resolves and decides them; the store measures the usage they
//! are decided on under the license's lock.

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

/// What a machine's license (and group) already hold, besides the machine itself, measured
/// under the license's lock. Only what the limits ask about is measured; the rest stays `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Whether another machine in the uniqueness scope has the fingerprint.
    pub fingerprint_taken: bool,
    /// The first of the request's components whose fingerprint is taken in its scope.
    pub component_taken: Option<usize>,
    /// The other machines the machine limit counts (the owner's, under PER_USER leasing).
    pub machines: Option<i64>,
    /// Sums over those machines.
    pub cores: Option<i64>,
    pub memory: Option<i64>,
    pub disk: Option<i64>,
    /// The other machines of the machine's group.
    pub group_machines: Option<i64>,
}

/// Decides an activation (or a change) from the usage measured: the pure rule the store runs
/// between measuring and writing, inside one transaction.
pub type Decide = fn(&Usage, &ActivationLimits, &crate::model::Machine) -> Result<(), ActivationRefusal>;
