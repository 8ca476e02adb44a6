//! Naming devices whose framing carries no id.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Maps a peer IP to a device name: the `[devices]` entry, else the IP as text.
#[derive(Debug, Default)]
pub struct DeviceNames {
    named: HashMap<IpAddr, Arc<str>>,
}

impl DeviceNames {
    /// Names from the `[devices]` table.
    pub fn new(table: &HashMap<IpAddr, String>) -> Self {
        DeviceNames {
            named: table
                .iter()
                .map(|(ip, name)| (canonical(*ip), Arc::from(name.as_str())))
                .collect(),
        }
    }

    /// The device name for a connection from `ip`.
    pub fn name_for(&self, ip: IpAddr) -> Arc<str> {
        let ip = canonical(ip);
        match self.named.get(&ip) {
            Some(name) => name.clone(),
            None => Arc::from(ip.to_string()),
        }
    }
}

/// An IPv4 peer on a dual-stack socket shows up as `::ffff:a.b.c.d`; treat it as `a.b.c.d`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_table_else_ip() {
        let table = HashMap::from([("10.0.0.7".parse().unwrap(), "door-cam".to_string())]);
        let names = DeviceNames::new(&table);
        assert_eq!(&*names.name_for("10.0.0.7".parse().unwrap()), "door-cam");
        assert_eq!(
            &*names.name_for("::ffff:10.0.0.7".parse().unwrap()),
            "door-cam"
        );
        assert_eq!(&*names.name_for("10.0.0.8".parse().unwrap()), "10.0.0.8");
        assert_eq!(&*names.name_for("::1".parse().unwrap()), "::1");
    }
}
