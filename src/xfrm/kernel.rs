//! The kernel's xfrm policies over NETLINK_XFRM, synchronously: read them
//! (`ip xfrm policy show`), and observe, diff and apply a desired list
//! (`ip xfrm policy add | update | delete`). Only policies whose priority is in
//! [`BAND`] are read back as Ringfence's; no other policy is ever changed.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::ops::RangeInclusive;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_xfrm::policy::{DefaultMessage, DelGetMessage, ModifyMessage};
use netlink_packet_xfrm::state::{DelGetMessage as SaDelGetMessage, GetDumpMessage};
use netlink_packet_xfrm::{
    Address, LifetimeConfig, UserPolicyId, UserPolicyInfo, UserSaId, UserTemplate, XfrmAttrs, XfrmMessage, AF_INET,
    AF_INET6, IPPROTO_ESP, XFRM_MODE_TRANSPORT, XFRM_POLICY_ALLOW, XFRM_POLICY_IN, XFRM_POLICY_OUT,
    XFRM_POLICY_TYPE_MAIN,
};
use netlink_sys::{protocols::NETLINK_XFRM, Socket, SocketAddr};

use super::{Action, Dir, Level, Policy, Prefix, Selector, BAND};
use crate::net::{IPPROTO_ICMP, IPPROTO_ICMPV6};

/// A policy of Ringfence's in the kernel, with the index the kernel gave it
/// (kept when XFRM_MSG_UPDPOLICY replaces the policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub policy: Policy,
    pub index: u32,
}

/// What `apply` changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Update,
    Remove,
}

/// One policy the kernel refused to add, update or remove.
#[derive(Debug)]
pub struct Failure {
    pub op: Op,
    pub policy: Policy,
    pub error: io::Error,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let op = match self.op {
            Op::Add => "add",
            Op::Update => "update",
            Op::Remove => "remove",
        };
        write!(f, "cannot {op} xfrm policy `{}`: {}", self.policy, self.error)?;
        if self.op == Op::Add && self.error.raw_os_error() == Some(nix::libc::EEXIST) {
            write!(f, " (a policy that is not Ringfence's has this selector and direction)")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot open a NETLINK_XFRM socket")]
    Open(#[source] io::Error),
    #[error("this kernel has no xfrm netlink API (CONFIG_XFRM_USER, module xfrm_user): isolation cannot work")]
    Unsupported,
    #[error("cannot read the kernel's xfrm policies or SAs")]
    Dump(#[source] io::Error),
    #[error("cannot delete an xfrm SA")]
    DeleteSa(#[source] io::Error),
    #[error("cannot release the packets held for an SA")]
    Kick(#[source] io::Error),
    /// Every change was tried; these failed (each with its own cause).
    #[error("{}", .failed.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Changes { done: Changes, failed: Vec<Failure> },
}

/// What `apply` will do: add and update the most preferred first (a more
/// specific exemption is in place before the wider secure subnet it cuts
/// into), then remove.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub add: Vec<Policy>,
    pub update: Vec<Policy>,
    pub remove: Vec<Installed>,
}

/// The difference between the kernel's policies of Ringfence's and the
/// desired ones, matched by (direction, selector) as the kernel does. Of two
/// desired policies with the same key, the first counts.
pub fn diff(installed: &[Installed], desired: &[Policy]) -> Plan {
    let mut want: BTreeMap<_, &Policy> = BTreeMap::new();
    for p in desired {
        want.entry(p.key()).or_insert(p);
    }
    let have: BTreeMap<_, &Installed> = installed.iter().map(|i| (i.policy.key(), i)).collect();
    let mut plan = Plan::default();
    for (key, p) in &want {
        match have.get(key) {
            None => plan.add.push(**p),
            Some(i) if i.policy != **p => plan.update.push(**p),
            Some(_) => {}
        }
    }
    plan.remove = installed.iter().filter(|i| !want.contains_key(&i.policy.key())).cloned().collect();
    plan.add.sort_by_key(|p| p.priority);
    plan.update.sort_by_key(|p| p.priority);
    plan
}

/// A NETLINK_XFRM socket, in the network namespace of the thread that opened it.
pub struct Xfrm {
    socket: Socket,
    seq: u32,
}

impl Xfrm {
    pub fn open() -> Result<Xfrm, Error> {
        let mut socket = Socket::new(NETLINK_XFRM).map_err(Error::Open)?;
        socket.bind_auto().map_err(Error::Open)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(Error::Open)?;
        Ok(Xfrm { socket, seq: 0 })
    }

    /// Ringfence's policies in the kernel (`ip xfrm policy show`, those with a
    /// priority in [`BAND`]), sorted. A policy in the band that Ringfence
    /// cannot have made (a mark, an interface, ports, another template...) is
    /// not Ringfence's: it is left out, with a warning.
    pub fn dump(&mut self) -> Result<Vec<Installed>, Error> {
        let mut out = self.dump_all(XfrmMessage::GetPolicy(DelGetMessage::default()), |m, out: &mut Vec<_>| {
            if let XfrmMessage::AddPolicy(p) = m {
                out.extend(installed(&p));
            }
        })?;
        out.sort_by_key(|i| i.policy);
        Ok(out)
    }

    /// The last time (Unix seconds) a packet or a route lookup used each of
    /// Ringfence's policies: the kernel stamps an inbound policy at every
    /// packet it checks, an outbound one at route lookups.
    pub fn last_used(&mut self) -> Result<Vec<(Policy, u64)>, Error> {
        self.dump_all(XfrmMessage::GetPolicy(DelGetMessage::default()), |m, out: &mut Vec<_>| {
            if let XfrmMessage::AddPolicy(p) = m {
                out.extend(installed(&p).map(|i| (i.policy, p.user_policy_info.lifetime_cur.use_time)));
            }
        })
    }

    /// Moves what waits for an SA: replaces each of Ringfence's outbound ESP
    /// policies by itself (XFRM_MSG_UPDPOLICY), which hands its queue of held
    /// packets to the new policy and processes it at once
    /// (`xfrm_policy_requeue`) instead of at the queue timer's next tick
    /// (100 ms, doubling up to 60 s); then XFRM_MSG_SETDEFAULT with nothing to
    /// change, which bumps the route cache generations of both families
    /// (`rt_genid_bump_all`). A socket whose first packet waited keeps the
    /// queue's placeholder route (`DST_XFRM_QUEUE`), which sends each of its
    /// packets through the queue and its timer: only that bump makes it look
    /// up its route again and find the SA (integration/vm/README.md).
    pub fn kick(&mut self) -> Result<(), Error> {
        let held: Vec<Policy> = self
            .dump()?
            .into_iter()
            .map(|i| i.policy)
            .filter(|p| p.dir == Dir::Out && matches!(p.action, Action::Esp { .. }))
            .collect();
        for p in &held {
            match self.request(XfrmMessage::UpdatePolicy(modify_message(p)), NLM_F_ACK, drop) {
                // Removed meanwhile by an apply: nothing waits on it any more.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                r => r.map_err(Error::Kick)?,
            }
        }
        // XFRM_USERPOLICY_UNSPEC (0) in all three: the defaults stay as they are.
        let bump = XfrmMessage::SetPolicyDefault(DefaultMessage::default());
        self.request(bump, NLM_F_ACK, drop).map_err(Error::Kick)
    }

    /// The kernel's ESP SAs of the `reqids` (charon installs one each way per
    /// CHILD_SA), larval ones (an ACQUIRE's, SPI 0) left out.
    pub fn esp_sas(&mut self, reqids: RangeInclusive<u32>) -> Result<Vec<UserSaId>, Error> {
        self.dump_all(XfrmMessage::GetDumpSa(GetDumpMessage::default()), |m, out: &mut Vec<UserSaId>| {
            if let XfrmMessage::AddSa(sa) = m {
                let info = &sa.user_sa_info;
                if reqids.contains(&info.reqid) && info.id.proto == IPPROTO_ESP && info.id.spi != 0 {
                    out.push(UserSaId {
                        daddr: info.id.daddr,
                        spi: info.id.spi,
                        family: info.family,
                        proto: IPPROTO_ESP,
                    });
                }
            }
        })
    }

    /// Deletes the kernel's ESP SAs of the `reqids`; returns how many there were.
    pub fn delete_esp_sas(&mut self, reqids: RangeInclusive<u32>) -> Result<usize, Error> {
        let sas = self.esp_sas(reqids)?;
        for id in &sas {
            let message = XfrmMessage::DeleteSa(SaDelGetMessage { user_sa_id: *id, nlas: vec![] });
            match self.request(message, NLM_F_ACK, drop) {
                // Gone meanwhile (expired, or deleted by charon).
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ESRCH as i32) => {}
                Err(e) => return Err(Error::DeleteSa(e)),
                Ok(()) => {}
            }
        }
        Ok(sas.len())
    }

    /// A dump, read again (up to 3 times) when the kernel flags that it
    /// changed while it was read.
    fn dump_all<T>(&mut self, request: XfrmMessage, each: impl Fn(XfrmMessage, &mut Vec<T>)) -> Result<Vec<T>, Error> {
        let mut tries = 0;
        loop {
            let mut out = Vec::new();
            match self.request(request.clone(), NLM_F_DUMP, |m| each(m, &mut out)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted && tries < 3 => tries += 1,
                Err(e) => return Err(Error::Dump(e)),
                Ok(()) => return Ok(out),
            }
        }
    }

    /// Makes Ringfence's policies in the kernel exactly `desired`: adds the
    /// missing ones (XFRM_MSG_NEWPOLICY, which refuses to replace a policy
    /// that is not Ringfence's), replaces the changed ones in place
    /// (XFRM_MSG_UPDPOLICY), removes the ones no longer wanted. Every change
    /// is tried; the failures are reported together, each with its policy.
    pub fn apply(&mut self, desired: &[Policy]) -> Result<Changes, Error> {
        let plan = diff(&self.dump()?, desired);
        let mut done = Changes::default();
        let mut failed = Vec::new();
        let mut note = |result: io::Result<()>, op, policy: &Policy, count: &mut usize| match result {
            Ok(()) => *count += 1,
            Err(error) => failed.push(Failure { op, policy: *policy, error }),
        };
        let mut changes: Vec<(Op, &Policy)> =
            plan.add.iter().map(|p| (Op::Add, p)).chain(plan.update.iter().map(|p| (Op::Update, p))).collect();
        changes.sort_by_key(|(_, p)| p.priority);
        for (op, p) in changes {
            let message = modify_message(p);
            let (message, count) = match op {
                Op::Add => (XfrmMessage::AddPolicy(message), &mut done.added),
                _ => (XfrmMessage::UpdatePolicy(message), &mut done.updated),
            };
            note(self.request(message, NLM_F_ACK, drop), op, p, count);
        }
        for i in &plan.remove {
            let id =
                UserPolicyId { selector: selector(&i.policy.selector), index: i.index, direction: dir(i.policy.dir) };
            let result = match self.request(
                XfrmMessage::DeletePolicy(DelGetMessage { user_policy_id: id, nlas: vec![] }),
                NLM_F_ACK,
                drop,
            ) {
                // Gone already: someone else removed it since the dump.
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                r => r,
            };
            note(result, Op::Remove, &i.policy, &mut done.removed);
        }
        if failed.is_empty() {
            Ok(done)
        } else {
            Err(Error::Changes { done, failed })
        }
    }

    /// Removes all of Ringfence's policies (`--flush-on-exit`).
    pub fn remove_all(&mut self) -> Result<Changes, Error> {
        self.apply(&[])
    }

    /// Sends one request and reads its answer: the messages of a dump, given
    /// to `each`, up to NLMSG_DONE, or the kernel's acknowledgement.
    fn request(&mut self, message: XfrmMessage, flags: u16, mut each: impl FnMut(XfrmMessage)) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut interrupted = false;
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut rest = &data[..];
            while !rest.is_empty() {
                let reply = NetlinkMessage::<XfrmMessage>::deserialize(rest)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = (reply.header.length as usize).min(rest.len());
                rest = &rest[len.max(1)..];
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                interrupted |= reply.header.flags & NLM_F_DUMP_INTR != 0;
                match reply.payload {
                    NetlinkPayload::InnerMessage(m) => each(m),
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    NetlinkPayload::Error(_) | NetlinkPayload::Done(_) if interrupted => {
                        return Err(io::Error::new(io::ErrorKind::Interrupted, "the policies changed during the dump"))
                    }
                    NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => return Ok(()),
                    // NLMSG_NOOP, NLMSG_OVERRUN: nothing to read.
                    _ => {}
                }
            }
        }
    }
}

fn dir(d: Dir) -> u8 {
    match d {
        Dir::In => XFRM_POLICY_IN,
        Dir::Out => XFRM_POLICY_OUT,
    }
}

fn selector(s: &Selector) -> netlink_packet_xfrm::Selector {
    let mut k = netlink_packet_xfrm::Selector::default();
    k.source_prefix(&s.src.addr, s.src.len);
    k.destination_prefix(&s.dst.addr, s.dst.len);
    k.proto = s.proto.unwrap_or(0);
    if let Some(t) = s.icmp_type {
        k.sport = t.into();
        k.sport_mask = u16::MAX;
    }
    k
}

/// XFRM_MSG_NEWPOLICY or UPDPOLICY's body, as `ip xfrm policy add` makes it:
/// action allow, lifetimes without limits, no mark.
fn modify_message(p: &Policy) -> ModifyMessage {
    let selector = selector(&p.selector);
    let info = UserPolicyInfo {
        selector,
        lifetime_cfg: LifetimeConfig::default(),
        priority: p.priority,
        direction: dir(p.dir),
        action: XFRM_POLICY_ALLOW,
        ..Default::default()
    };
    let nlas = match p.action {
        Action::Clear => vec![],
        Action::Esp { reqid, level } => {
            let mut t =
                UserTemplate { family: selector.family, reqid, mode: XFRM_MODE_TRANSPORT, ..Default::default() };
            t.protocol(IPPROTO_ESP);
            t.optional(level == Level::Use);
            vec![XfrmAttrs::Template(vec![t])]
        }
    };
    ModifyMessage { user_policy_info: info, nlas }
}

/// The policy of a dumped message, if Ringfence could have made it.
fn installed(m: &ModifyMessage) -> Option<Installed> {
    let info = &m.user_policy_info;
    if !BAND.contains(&info.priority) {
        return None;
    }
    let policy = policy(info, &m.nlas);
    if policy.is_none() {
        tracing::warn!(
            "xfrm policy index {} has priority {:#x}, in Ringfence's band, but is not one Ringfence makes; left alone",
            info.index,
            info.priority
        );
    }
    policy.map(|policy| Installed { policy, index: info.index })
}

fn policy(info: &UserPolicyInfo, nlas: &[XfrmAttrs]) -> Option<Policy> {
    let dir = match info.direction {
        XFRM_POLICY_IN => Dir::In,
        XFRM_POLICY_OUT => Dir::Out,
        _ => return None,
    };
    let mut templates: &[UserTemplate] = &[];
    for nla in nlas {
        match nla {
            XfrmAttrs::Template(t) => templates = t,
            XfrmAttrs::PolicyType(t) if t.ptype != XFRM_POLICY_TYPE_MAIN => return None,
            // What else changes which packets a policy matches: Ringfence sets none of them.
            XfrmAttrs::Mark(_) | XfrmAttrs::IfId(_) | XfrmAttrs::SecurityContext(_) => return None,
            _ => {}
        }
    }
    let action = match templates {
        [] => Action::Clear,
        [t] if t.id.proto == IPPROTO_ESP
            && t.mode == XFRM_MODE_TRANSPORT
            && t.id.spi == 0
            && t.id.daddr == Address::default()
            && t.saddr == Address::default() =>
        {
            Action::Esp { reqid: t.reqid, level: if t.optional != 0 { Level::Use } else { Level::Required } }
        }
        _ => return None,
    };
    if info.action != XFRM_POLICY_ALLOW || info.flags != 0 {
        return None;
    }
    Some(Policy { dir, selector: from_kernel(&info.selector)?, priority: info.priority, action })
}

fn from_kernel(k: &netlink_packet_xfrm::Selector) -> Option<Selector> {
    let v4 = match k.family {
        AF_INET => true,
        AF_INET6 => false,
        _ => return None,
    };
    let prefix = |a: &Address, len: u8| {
        let addr = if v4 { a.to_ipv4().into() } else { a.to_ipv6().into() };
        Prefix { addr, len }
    };
    let icmp = matches!(k.proto, IPPROTO_ICMP | IPPROTO_ICMPV6);
    let icmp_type = match (k.sport_mask, k.sport) {
        (0, 0) => None,
        (u16::MAX, t) if icmp => Some(u8::try_from(t).ok()?),
        _ => return None,
    };
    if k.dport_mask != 0 || k.dport != 0 || k.ifindex != 0 {
        return None;
    }
    Some(Selector {
        src: prefix(&k.saddr, k.prefixlen_s),
        dst: prefix(&k.daddr, k.prefixlen_d),
        proto: (k.proto != 0).then_some(k.proto),
        icmp_type,
    })
}

#[cfg(test)]
pub(crate) mod tests;
