//! Site → enterprise federation against real brokers on loopback: two site
//! twins (`mezzanine record` on the embedded demo plant, different seeds and
//! site names) publish their summaries to their own mosquitto, each bridged
//! by the shipped `config/mosquitto-site-bridge.conf` to a third, the
//! enterprise broker; the enterprise view's model (headless) sees both
//! sites with areas, lines and machines, shows a site stale with its
//! last-seen time when its broker (and so its bridge) goes away, and live
//! again when it comes back.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mezzanine::demo::broker::free_port;
use mezzanine::federation::enterprise::{
    EnterpriseConfig, EnterpriseModel, FeedEvent, SiteFreshness, spawn_feed,
};
use mezzanine::ingest::now_us;

use crate::live::{Mosquitto, start_mosquitto, start_mosquitto_with};
use crate::repo;

/// The shipped bridge config for `site`, pointed at the enterprise broker
/// (its listener and persistence lines are the test broker's own).
fn bridge_conf(site: &str, enterprise_port: u16) -> String {
    let shipped =
        std::fs::read_to_string(repo("config/mosquitto-site-bridge.conf")).expect("shipped");
    let mut out = String::new();
    let mut in_bridge = false;
    for line in shipped.lines() {
        in_bridge |= line.starts_with("connection ");
        if !in_bridge || line.starts_with('#') {
            continue;
        }
        let line = if line.starts_with("address ") {
            format!("address 127.0.0.1:{enterprise_port}")
        } else {
            line.replace("lyon", site)
        };
        out.push_str(&line);
        out.push('\n');
    }
    assert!(out.contains("topic mezzanine/sites/"), "{out}");
    out
}

fn site_twin(dir: &Path, site: &str, seed: u64, broker_port: u16) -> Child {
    let config = dir.join(format!("{site}.toml"));
    std::fs::write(
        &config,
        format!(
            "[plant]\nsite = \"{site}\"\nscene = \"{}\"\nregistry = \"{}\"\n\n[mqtt]\nclient_id = \"twin-{site}\"\n\n\
             [demo]\nseed = {seed}\ntime_scale = 60.0\n\n[history]\npath = \"{}\"\n\n\
             [federation]\npublish = true\nbroker = \"mqtt://127.0.0.1:{broker_port}\"\n\
             min_interval_ms = 500\n",
            repo("scenes/demo-plant.glb").display(),
            repo("scenes/demo-plant.toml").display(),
            dir.join(format!("{site}.duckdb")).display()
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.join(format!("{site}.log"))).expect("log");
    Command::new(env!("CARGO_BIN_EXE_mezzanine"))
        .arg("--config")
        .arg(&config)
        .arg("record")
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("the site twin starts")
}

struct Enterprise {
    model: EnterpriseModel,
    feed: mezzanine::federation::enterprise::EnterpriseFeed,
    twins: Vec<Child>,
}

impl Enterprise {
    fn pump(&mut self) {
        while let Ok(e) = self.feed.events.try_recv() {
            if let FeedEvent::Message { topic, payload } = e {
                let _ = self.model.apply(&topic, &payload);
            }
        }
    }
    fn wait(&mut self, what: &str, secs: u64, mut f: impl FnMut(&EnterpriseModel) -> bool) {
        let start = Instant::now();
        loop {
            self.pump();
            if f(&self.model) {
                return;
            }
            for t in &mut self.twins {
                if let Ok(Some(status)) = t.try_wait() {
                    panic!("a site twin exited ({status}) while waiting for {what}");
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "waited {secs} s for {what}: {:#?}",
                self.model
                    .sites
                    .values()
                    .map(|s| (&s.site, s.status.as_ref().map(|x| x.ts_us), s.assets.len()))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn two_sites_bridged_to_the_enterprise_are_seen_and_a_dropped_bridge_shows_stale_then_recovers() {
    let dir = tempfile::tempdir().expect("dir");
    let (ent_dir, a_dir, b_dir) = (
        dir.path().join("enterprise"),
        dir.path().join("lyon"),
        dir.path().join("grenoble"),
    );
    for d in [&ent_dir, &a_dir, &b_dir] {
        std::fs::create_dir_all(d).expect("dir");
    }
    let ent_port = free_port().expect("port");
    let _enterprise_broker = start_mosquitto(ent_port, &ent_dir);
    let a_port = free_port().expect("port");
    let _a_broker = start_mosquitto_with(a_port, &a_dir, &bridge_conf("lyon", ent_port));
    let b_port = free_port().expect("port");
    let mut b_broker: Option<Mosquitto> = Some(start_mosquitto_with(
        b_port,
        &b_dir,
        &bridge_conf("grenoble", ent_port),
    ));

    let ent_toml = dir.path().join("enterprise.toml");
    std::fs::write(
        &ent_toml,
        format!(
            "broker = \"mqtt://127.0.0.1:{ent_port}\"\nstale_after_s = 3\n\
             [[site]]\nname = \"lyon\"\n[[site]]\nname = \"grenoble\"\n"
        ),
    )
    .expect("enterprise.toml");
    let cfg = EnterpriseConfig::load(&ent_toml).expect("loads");
    let mut ent = Enterprise {
        model: EnterpriseModel::new(&cfg),
        feed: spawn_feed(&cfg).expect("feed"),
        twins: Vec::new(),
    };
    assert_eq!(
        ent.model.freshness("lyon", now_us()),
        SiteFreshness::Unheard
    );

    ent.twins = vec![
        site_twin(&a_dir, "lyon", 7, a_port),
        site_twin(&b_dir, "grenoble", 8, b_port),
    ];
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // Both sites, with their machines running and OEE on their lines.
        ent.wait("both sites live with machines and line OEE", 120, |m| {
            let now = now_us();
            ["lyon", "grenoble"].iter().all(|s| {
                m.freshness(s, now) == SiteFreshness::Live
                    && m.sites[*s].assets.values().any(|a| a.state == "running")
                    && m.lines(s).iter().any(|l| l.oee.is_some())
            })
        });
        for site in ["lyon", "grenoble"] {
            let v = &ent.model.sites[site];
            let status = v.status.as_ref().expect("heartbeat");
            assert_eq!(status.site, site);
            assert_eq!(status.time_zone, "Europe/Paris");
            assert!(status.recorder.is_some(), "recorder health of {site}");
            assert_eq!(status.assets as usize, v.assets.len(), "{site}");
            assert_eq!(v.online, Some(true));
            let lines = ent.model.lines(site);
            assert!(lines.len() >= 2, "{site}: {lines:?}");
            assert!(lines.iter().all(|l| !l.machines.is_empty()));
        }
        // Different seeds, different plants: the machine states differ
        // somewhere within a minute.
        ent.wait("the two plants to differ", 60, |m| {
            let a: Vec<_> = m.sites["lyon"].assets.values().map(|x| &x.state).collect();
            let b: Vec<_> = m.sites["grenoble"]
                .assets
                .values()
                .map(|x| &x.state)
                .collect();
            a != b
        });

        // Grenoble's broker goes away, and with it its bridge.
        let dropped_at = now_us();
        drop(b_broker.take());
        ent.wait("grenoble stale", 20, |m| {
            matches!(
                m.freshness("grenoble", now_us()),
                SiteFreshness::Stale { .. }
            )
        });
        let SiteFreshness::Stale { last_seen_us } = ent.model.freshness("grenoble", now_us())
        else {
            unreachable!()
        };
        assert!(
            last_seen_us <= dropped_at + 1_000_000 && last_seen_us >= dropped_at - 3_000_000,
            "last seen {last_seen_us} vs dropped {dropped_at}"
        );
        // Its machines are still shown, as last heard; Lyon stays live.
        assert!(!ent.model.sites["grenoble"].assets.is_empty());
        assert_eq!(ent.model.freshness("lyon", now_us()), SiteFreshness::Live);

        // The broker is back: the twin reconnects, the bridge carries on.
        b_broker = Some(start_mosquitto_with(
            b_port,
            &b_dir,
            &bridge_conf("grenoble", ent_port),
        ));
        ent.wait("grenoble live again", 60, |m| {
            m.freshness("grenoble", now_us()) == SiteFreshness::Live
        });
        let back = ent.model.sites["grenoble"].last_seen_us().expect("seen");
        assert!(back > last_seen_us + 1_000_000);
    }));
    for t in &mut ent.twins {
        let _ = t.kill();
        let _ = t.wait();
    }
    if let Err(e) = result {
        for site in ["lyon", "grenoble"] {
            let log = std::fs::read_to_string(dir.path().join(site).join(format!("{site}.log")))
                .unwrap_or_default();
            println!(
                "--- {site} twin log (tail) ---\n{}",
                &log[log.len().saturating_sub(3000)..]
            );
        }
        std::panic::resume_unwind(e);
    }
}
