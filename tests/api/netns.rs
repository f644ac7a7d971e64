//! A network namespace of the test's own, joined to this one by a veth pair with addresses of
//! its own (`10.213.<a>.<b>/30`, derived from the process id, so concurrent test processes do
//! not collide): a server in it is reached at a non-loopback address that exists only on this
//! machine. Everything is removed on drop (deleting the namespace deletes the pair).

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Netns {
    pub name: String,
    /// This namespace's end of the pair.
    pub host_addr: Ipv4Addr,
    /// The address inside the namespace (where its servers listen).
    pub inner_addr: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("`ip` not found: install iproute2 (tests/run.sh does)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Netns {
    pub fn create() -> Netns {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < 4, "at most four namespaces per test process");
        let pid = std::process::id();
        let name = format!("chatsdk-test-{pid}-{n}");
        // Sixteen /30 blocks per (a) value, four per process: a=pid's bits, b=the block.
        let slot = (pid % 4096) * 4 + n;
        let (a, b) = ((slot / 64) as u8, ((slot % 64) * 4) as u8);
        let host_addr = Ipv4Addr::new(10, 213, a, b + 1);
        let inner_addr = Ipv4Addr::new(10, 213, a, b + 2);
        let (outer, inner) = (format!("ct{pid}x{n}"), format!("ct{pid}y{n}"));
        // Left over by a test process that died with this pid: start clean.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let _ = Command::new("ip").args(["link", "del", &outer]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns {
            name,
            host_addr,
            inner_addr,
        };
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ]);
        ip(&["link", "set", &inner, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &outer]);
        ip(&["link", "set", &outer, "up"]);
        ns.exec_ip(&["addr", "add", &format!("{inner_addr}/30"), "dev", &inner]);
        ns.exec_ip(&["link", "set", &inner, "up"]);
        ns.exec_ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn exec_ip(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
