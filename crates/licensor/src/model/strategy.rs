//! The closed sets of values a policy's strategies take, each spelled on the wire and in the
//! stored rules exactly as Keygen spells it. A value outside a set is a compile error in code
//! and a refused attribute at the API.

use serde::{Deserialize, Serialize};

/// An enum whose variants each have one wire spelling; `ALL`, `as_str` and `parse` follow.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($wire => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:literal),+ $(,)? } default $default:ident) => {
        wire_enum!($(#[$meta])* $name { $($(#[$vmeta])* $variant = $wire),+ });

        impl Default for $name {
            fn default() -> Self {
                $name::$default
            }
        }
    };
}

pub(crate) use wire_enum;

wire_enum!(
    /// Where a machine fingerprint must be unique.
    MachineUniqueness {
        UniquePerAccount = "UNIQUE_PER_ACCOUNT",
        UniquePerProduct = "UNIQUE_PER_PRODUCT",
        UniquePerPolicy = "UNIQUE_PER_POLICY",
        UniquePerLicense = "UNIQUE_PER_LICENSE",
    } default UniquePerLicense
);

impl From<MachineUniqueness> for ComponentUniqueness {
    fn from(m: MachineUniqueness) -> Self {
        match m {
            MachineUniqueness::UniquePerAccount => ComponentUniqueness::UniquePerAccount,
            MachineUniqueness::UniquePerProduct => ComponentUniqueness::UniquePerProduct,
            MachineUniqueness::UniquePerPolicy => ComponentUniqueness::UniquePerPolicy,
            MachineUniqueness::UniquePerLicense => ComponentUniqueness::UniquePerLicense,
        }
    }
}

wire_enum!(
    /// Where a component fingerprint must be unique.
    ComponentUniqueness {
        UniquePerAccount = "UNIQUE_PER_ACCOUNT",
        UniquePerProduct = "UNIQUE_PER_PRODUCT",
        UniquePerPolicy = "UNIQUE_PER_POLICY",
        UniquePerLicense = "UNIQUE_PER_LICENSE",
        UniquePerMachine = "UNIQUE_PER_MACHINE",
    } default UniquePerMachine
);

wire_enum!(
    /// How many of the fingerprints (or components) in a validation scope must match.
    Matching {
        MatchAny = "MATCH_ANY",
        MatchTwo = "MATCH_TWO",
        MatchMost = "MATCH_MOST",
        MatchAll = "MATCH_ALL",
    } default MatchAny
);

wire_enum!(
    /// What an expired license may still do.
    ExpirationStrategy {
        RestrictAccess = "RESTRICT_ACCESS",
        RevokeAccess = "REVOKE_ACCESS",
        MaintainAccess = "MAINTAIN_ACCESS",
        AllowAccess = "ALLOW_ACCESS",
    } default RestrictAccess
);

wire_enum!(
    /// When a license's expiry clock starts.
    ExpirationBasis {
        FromCreation = "FROM_CREATION",
        FromFirstValidation = "FROM_FIRST_VALIDATION",
        FromFirstActivation = "FROM_FIRST_ACTIVATION",
        FromFirstUse = "FROM_FIRST_USE",
        FromFirstDownload = "FROM_FIRST_DOWNLOAD",
    } default FromCreation
);

wire_enum!(
    /// What a renewal extends from.
    RenewalBasis {
        FromExpiry = "FROM_EXPIRY",
        FromNow = "FROM_NOW",
        FromNowIfExpired = "FROM_NOW_IF_EXPIRED",
    } default FromExpiry
);

wire_enum!(
    /// What happens to the expiry when a license moves to this policy.
    TransferStrategy {
        KeepExpiry = "KEEP_EXPIRY",
        ResetExpiry = "RESET_EXPIRY",
    } default KeepExpiry
);

wire_enum!(
    /// Which credentials a license of the policy may present for itself.
    AuthenticationStrategy {
        Token = "TOKEN",
        License = "LICENSE",
        Session = "SESSION",
        Mixed = "MIXED",
        None = "NONE",
    } default Token
);

wire_enum!(
    /// Whom machine limits count per.
    MachineLeasing {
        PerLicense = "PER_LICENSE",
        PerUser = "PER_USER",
    } default PerLicense
);

wire_enum!(
    /// Whom process limits count per.
    ProcessLeasing {
        PerMachine = "PER_MACHINE",
        PerLicense = "PER_LICENSE",
        PerUser = "PER_USER",
    } default PerMachine
);

wire_enum!(
    /// How far past its limits a license may go.
    OverageStrategy {
        AlwaysAllowOverage = "ALWAYS_ALLOW_OVERAGE",
        Allow1_25xOverage = "ALLOW_1_25X_OVERAGE",
        Allow1_5xOverage = "ALLOW_1_5X_OVERAGE",
        Allow2xOverage = "ALLOW_2X_OVERAGE",
        NoOverage = "NO_OVERAGE",
    } default NoOverage
);

wire_enum!(
    /// How license keys of the policy are signed or encrypted.
    Scheme {
        LegacyEncrypt = "LEGACY_ENCRYPT",
        Rsa2048Pkcs1Encrypt = "RSA_2048_PKCS1_ENCRYPT",
        Rsa2048Pkcs1Sign = "RSA_2048_PKCS1_SIGN",
        Rsa2048Pkcs1PssSign = "RSA_2048_PKCS1_PSS_SIGN",
        Rsa2048JwtRs256 = "RSA_2048_JWT_RS256",
        Rsa2048Pkcs1SignV2 = "RSA_2048_PKCS1_SIGN_V2",
        Rsa2048Pkcs1PssSignV2 = "RSA_2048_PKCS1_PSS_SIGN_V2",
        Ed25519Sign = "ED25519_SIGN",
        EcdsaP256Sign = "ECDSA_P256_SIGN",
    }
);

wire_enum!(
    /// The unit of a check-in interval.
    CheckInInterval {
        Day = "day",
        Week = "week",
        Month = "month",
        Year = "year",
    }
);

wire_enum!(
    /// What happens to a machine whose heartbeat died.
    CullStrategy {
        DeactivateDead = "DEACTIVATE_DEAD",
        KeepDead = "KEEP_DEAD",
    } default DeactivateDead
);

wire_enum!(
    /// How long after its death a machine may be revived by a heartbeat.
    ResurrectionStrategy {
        AlwaysRevive = "ALWAYS_REVIVE",
        Revive15Minutes = "15_MINUTE_REVIVE",
        Revive10Minutes = "10_MINUTE_REVIVE",
        Revive5Minutes = "5_MINUTE_REVIVE",
        Revive2Minutes = "2_MINUTE_REVIVE",
        Revive1Minute = "1_MINUTE_REVIVE",
        NoRevive = "NO_REVIVE",
    } default NoRevive
);

wire_enum!(
    /// When a machine's heartbeat clock starts.
    HeartbeatBasis {
        FromCreation = "FROM_CREATION",
        FromFirstPing = "FROM_FIRST_PING",
    } default FromFirstPing
);

wire_enum!(
    /// A machine's (or process's) heartbeat status, as Keygen reports it.
    HeartbeatStatus {
        NotStarted = "NOT_STARTED",
        Alive = "ALIVE",
        Dead = "DEAD",
        /// Answered once, by the ping that revived a dead machine.
        Resurrected = "RESURRECTED",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_spellings_round_trip() {
        for s in ResurrectionStrategy::ALL {
            assert_eq!(ResurrectionStrategy::parse(s.as_str()), Some(*s));
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        assert_eq!(OverageStrategy::parse("ALLOW_1_25X_OVERAGE"), Some(OverageStrategy::Allow1_25xOverage));
        assert_eq!(Scheme::parse("ED25519"), None);
        assert_eq!(CheckInInterval::Month.as_str(), "month");
    }
}
