//! Configuration: defaults, then a TOML file, then `MEZZANINE_*` environment
//! variables, then command-line flags; validated once, read-only afterwards.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Everything that can go wrong assembling the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{name}={value}: {message}")]
    Env {
        name: &'static str,
        value: String,
        message: String,
    },
    #[error("{what} {} does not exist", path.display())]
    Missing { what: &'static str, path: PathBuf },
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    pub plant: PlantConfig,
    pub window: WindowConfig,
    pub render: RenderConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlantConfig {
    /// glTF/GLB plant layout.
    pub scene: PathBuf,
    /// Asset registry (TOML).
    pub registry: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    pub width_px: u32,
    pub height_px: u32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderConfig {
    pub shadows: bool,
    pub msaa: bool,
}

/// Where the shipped demo plant lives: next to the working directory when run
/// from a checkout, else next to the crate sources this binary was built from.
pub fn shipped(relative: &str) -> PathBuf {
    let local = PathBuf::from(relative);
    if local.exists() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

impl Default for PlantConfig {
    fn default() -> Self {
        Self {
            scene: shipped("scenes/demo-plant.glb"),
            registry: shipped("scenes/demo-plant.toml"),
        }
    }
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            width_px: 1600,
            height_px: 900,
        }
    }
}

impl Default for RenderConfig {
    fn default() -> Self {
        Self {
            shadows: true,
            msaa: true,
        }
    }
}

impl AppConfig {
    /// Defaults, overlaid by `file` (if any), then by the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                Self::from_toml(&text, path)?
            }
            None => Self::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        Ok(cfg)
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: AppConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        // Relative paths in a config file are relative to the file.
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.plant.scene, &mut cfg.plant.registry] {
            if p.is_relative() && text.contains("[plant]") {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }

    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("MEZZANINE_SCENE") {
            self.plant.scene = v.into();
        }
        if let Some(v) = get("MEZZANINE_REGISTRY") {
            self.plant.registry = v.into();
        }
        if let Some(v) = get("MEZZANINE_SHADOWS") {
            self.render.shadows = parse_bool("MEZZANINE_SHADOWS", &v)?;
        }
        Ok(())
    }

    /// Checks that the files named exist.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.plant.scene.exists() {
            return Err(ConfigError::Missing {
                what: "plant layout",
                path: self.plant.scene.clone(),
            });
        }
        if !self.plant.registry.exists() {
            return Err(ConfigError::Missing {
                what: "asset registry",
                path: self.plant.registry.clone(),
            });
        }
        Ok(())
    }
}

fn parse_bool(name: &'static str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Env {
            name,
            value: v.to_string(),
            message: "expected true/false".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment_override_defaults() {
        let cfg = AppConfig::from_toml(
            "[plant]\nscene = \"a.glb\"\nregistry = \"a.toml\"\n[window]\nwidth_px = 800\n",
            Path::new("/etc/mz/mezzanine.toml"),
        )
        .expect("valid config");
        assert_eq!(cfg.plant.scene, PathBuf::from("/etc/mz/a.glb"));
        assert_eq!(cfg.window.width_px, 800);
        assert_eq!(cfg.window.height_px, 900);
        let mut cfg = cfg;
        cfg.apply_env(|k| (k == "MEZZANINE_SHADOWS").then(|| "off".to_string()))
            .expect("valid env");
        assert!(!cfg.render.shadows);
        let err = cfg
            .apply_env(|k| (k == "MEZZANINE_SHADOWS").then(|| "maybe".to_string()))
            .expect_err("bad bool");
        assert!(err.to_string().contains("MEZZANINE_SHADOWS=maybe"));
    }

    #[test]
    fn unknown_keys_are_refused_with_the_file_name() {
        let err = AppConfig::from_toml("[plant]\nscen = \"x\"\n", Path::new("m.toml"))
            .expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.starts_with("m.toml:"), "{msg}");
        assert!(msg.contains("scen"), "{msg}");
    }
}
