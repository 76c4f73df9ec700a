//! The platforms `confidant generate` writes for: which runtime class runs a confidential pod
//! there, and which TEE its evidence comes from.

use std::fmt;
use std::str::FromStr;

/// Runtime classes that run pods in a confidential VM; setting one opts a pod in.
pub const CONFIDENTIAL_RUNTIME_CLASSES: [&str; 3] =
    ["kata-cc-isolation", "kata-qemu-snp", "kata-qemu-tdx"];

/// Where the generated pods run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Azure Kubernetes Service confidential containers (SEV-SNP pod VMs), runtime class
    /// `kata-cc-isolation`.
    Aks,
    /// Confidential Containers on SEV-SNP, runtime class `kata-qemu-snp`.
    CocoSnp,
    /// Confidential Containers on TDX, runtime class `kata-qemu-tdx`.
    CocoTdx,
    /// Any cluster, no confidential runtime class: the SIMULATION TEE, which protects nothing.
    Sim,
}

impl Platform {
    /// Every platform, in the order `--help` lists them.
    pub const ALL: [Platform; 4] = [
        Platform::Aks,
        Platform::CocoSnp,
        Platform::CocoTdx,
        Platform::Sim,
    ];

    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Aks => "aks",
            Platform::CocoSnp => "coco-snp",
            Platform::CocoTdx => "coco-tdx",
            Platform::Sim => "sim",
        }
    }

    /// The runtime class a confidential pod gets (`None` for `sim`: the cluster's default).
    pub fn runtime_class(self) -> Option<&'static str> {
        match self {
            Platform::Aks => Some("kata-cc-isolation"),
            Platform::CocoSnp => Some("kata-qemu-snp"),
            Platform::CocoTdx => Some("kata-qemu-tdx"),
            Platform::Sim => None,
        }
    }

    /// The TEE of the pods' evidence, as the manifest names it.
    pub fn tee(self) -> &'static str {
        match self {
            Platform::Aks | Platform::CocoSnp => "snp",
            Platform::CocoTdx => "tdx",
            Platform::Sim => "sim",
        }
    }

    /// Whether it is the simulation TEE.
    pub fn is_simulation(self) -> bool {
        self == Platform::Sim
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Platform {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Platform::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Platform::ALL.iter().map(|p| p.as_str()).collect();
                format!("expected one of {}, got {s:?}", names.join(", "))
            })
    }
}
