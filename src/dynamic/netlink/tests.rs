use netlink_packet_route::route::RouteNextHop;

use super::*;

fn link(index: u32, name: &str) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes.push(LinkAttribute::IfName(name.into()));
    m
}

fn address(index: u32, ip: &str, len: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.index = index;
    m.header.prefix_len = len;
    m.attributes.push(AddressAttribute::Address(ip.parse().unwrap()));
    m
}

fn route(prefix_len: u8, table: u32, attributes: Vec<RouteAttribute>) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.destination_prefix_length = prefix_len;
    m.header.kind = RouteType::Unicast;
    m.header.table = table.min(255) as u8;
    m.attributes = attributes;
    m.attributes.push(RouteAttribute::Table(table));
    m
}

fn gw(ip: &str) -> RouteAttribute {
    match ip.parse().unwrap() {
        IpAddr::V4(a) => RouteAttribute::Gateway(RouteAddress::Inet(a)),
        IpAddr::V6(a) => RouteAttribute::Gateway(RouteAddress::Inet6(a)),
    }
}

fn hop(interface_index: u32, gateway: &str) -> RouteNextHop {
    let mut h = RouteNextHop::default();
    h.interface_index = interface_index;
    h.attributes.push(gw(gateway));
    h
}

fn render(state: &DynState, keyword: Keyword, v4: bool) -> Vec<String> {
    state
        .entries(keyword, v4)
        .iter()
        .map(|e| {
            format!(
                "{}{} ({})",
                e.interface.as_ref().map(|i| format!("{i} ")).unwrap_or_default(),
                crate::net::format_addr_range(&e.addresses),
                e.source
            )
        })
        .collect()
}

#[test]
fn local_subnets_are_per_interface_and_skip_loopback() {
    let links = [link(1, "lo"), link(2, "eth0"), link(3, "wg0")];
    let addrs = [
        address(1, "127.0.0.1", 8),
        address(2, "10.0.0.5", 24),
        address(2, "10.0.0.6", 24),
        address(3, "10.9.0.1", 32),
        address(2, "fd00::5", 64),
    ];
    let s = state_from(&links, &addrs, &[]);
    assert_eq!(
        render(&s, Keyword::LocalSubnet, true),
        [
            "eth0 10.0.0.0/24 (address 10.0.0.5/24 on eth0)",
            "eth0 10.0.0.0/24 (address 10.0.0.6/24 on eth0)",
            "wg0 10.9.0.1 (address 10.9.0.1/32 on wg0)"
        ]
    );
    assert_eq!(render(&s, Keyword::LocalSubnet, false), ["eth0 fd00::/64 (address fd00::5/64 on eth0)"]);
    // Two addresses in one subnet are one element of the set.
    assert_eq!(crate::compile::keyword_sets::set(&s, Keyword::LocalSubnet, true).elems.len(), 2);
}

#[test]
fn default_gateways_come_from_every_table_and_every_next_hop() {
    let links = [link(2, "eth0"), link(3, "eth1")];
    let mut multipath = route(0, 100, vec![]);
    multipath.attributes.push(RouteAttribute::MultiPath(vec![hop(2, "192.0.2.1"), hop(3, "198.51.100.1")]));
    let routes = [
        route(0, 254, vec![gw("10.0.0.1"), RouteAttribute::Oif(2)]),
        multipath,
        route(24, 254, vec![gw("10.0.0.254")]), // not a default route
        route(0, 254, vec![gw("fe80::1"), RouteAttribute::Oif(2)]),
    ];
    let s = state_from(&links, &[], &routes);
    assert_eq!(
        render(&s, Keyword::DefaultGateway, true),
        [
            "10.0.0.1 (default route in table 254 via 10.0.0.1 on eth0)",
            "192.0.2.1 (default route in table 100 via 192.0.2.1 on eth0)",
            "198.51.100.1 (default route in table 100 via 198.51.100.1 on eth1)",
        ]
    );
    assert_eq!(
        render(&s, Keyword::DefaultGateway, false),
        ["fe80::1 (default route in table 254 via fe80::1 on eth0)"]
    );
}

#[test]
fn unreachable_defaults_have_no_gateway() {
    let mut r = route(0, 254, vec![]);
    r.header.kind = RouteType::Unreachable;
    assert_eq!(state_from(&[], &[], &[r]), DynState::default());
}
