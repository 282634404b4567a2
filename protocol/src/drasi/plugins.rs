//! drasi-server's plugin management keys (`plugins`, `autoInstallPlugins`, `pluginRegistry`,
//! `verifyPlugins`, `trustedIdentities`, `hotReloadPlugins`, `hotReloadDebounceMs`) are the
//! operator's, not the tenant's: the workload's plugin directory is shared by every instance
//! of a worker, and a registry may be a directory on the host. A config that sets them is
//! accepted as pasted; the worker renders it without them (no install, no fetch, no reload)
//! and the instance says so in `warnings`.

use super::DrasiConfig;

/// What a warning says about each of these keys.
pub const IGNORED: &str = "ignored: plugins are the operator's (the workload's plugin \
     directory is shared by every instance); DRaaS never lets a config install, fetch, \
     verify or reload them";

impl DrasiConfig {
    /// The plugin management keys this config sets, as drasi-server spells them.
    pub fn plugin_settings(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        if !self.plugins.is_empty() {
            set.push("plugins");
        }
        if self.auto_install_plugins.is_some() {
            set.push("autoInstallPlugins");
        }
        if self.plugin_registry.is_some() {
            set.push("pluginRegistry");
        }
        if self.verify_plugins.is_some() {
            set.push("verifyPlugins");
        }
        if !self.trusted_identities.is_empty() {
            set.push("trustedIdentities");
        }
        if self.hot_reload_plugins.is_some() {
            set.push("hotReloadPlugins");
        }
        if self.hot_reload_debounce_ms.is_some() {
            set.push("hotReloadDebounceMs");
        }
        set
    }

    /// Drops every plugin management key, and says outright that nothing is installed or
    /// reloaded (`autoInstallPlugins: false`, `hotReloadPlugins: false`) so the workload's own
    /// defaults do not decide. Signature checks stay the operator's (`--runtime-arg`).
    pub fn clear_plugin_settings(&mut self) {
        self.plugins.clear();
        self.auto_install_plugins = Some(false);
        self.plugin_registry = None;
        self.verify_plugins = None;
        self.trusted_identities.clear();
        self.hot_reload_plugins = Some(false);
        self.hot_reload_debounce_ms = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_keys_are_named_then_cleared() {
        let mut config = DrasiConfig::from_yaml_str(
            "autoInstallPlugins: true\npluginRegistry: /var/lib/plugins\nhotReloadPlugins: true\n\
             verifyPlugins: false\nplugins:\n  - ref: source/postgres:0.1.0\n",
        )
        .unwrap();
        assert_eq!(
            config.plugin_settings(),
            [
                "plugins",
                "autoInstallPlugins",
                "pluginRegistry",
                "verifyPlugins",
                "hotReloadPlugins"
            ]
        );
        config.clear_plugin_settings();
        let yaml = config.to_yaml();
        assert!(yaml.contains("autoInstallPlugins: false"), "{yaml}");
        assert!(yaml.contains("hotReloadPlugins: false"), "{yaml}");
        for gone in ["pluginRegistry", "verifyPlugins", "plugins:", "/var/lib"] {
            assert!(!yaml.contains(gone), "{gone} in {yaml}");
        }
        // What the worker writes is itself a config with nothing to warn about but the two
        // explicit refusals.
        let again = DrasiConfig::from_yaml_str(&yaml).unwrap();
        assert_eq!(
            again.plugin_settings(),
            ["autoInstallPlugins", "hotReloadPlugins"]
        );
    }
}
