//! How MCP servers are reached: a client of its own (no redirects, the
//! server's own headers only) whose resolver refuses addresses a tenant must
//! never reach, even when a public name resolves to them.

use std::net::IpAddr;

/// Addresses no MCP server may have: link-local (cloud metadata services
/// live there: 169.254.169.254, fd00:ec2::254), unspecified and broadcast.
pub fn forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_ip(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            // fe80::/10 link-local; fd00:ec2::254 the EC2 metadata service over IPv6.
            (seg[0] & 0xffc0) == 0xfe80
                || v6.is_unspecified()
                || seg == [0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254]
        }
    }
}
