//! A subscriber's identity, fixed when its connection is accepted. `SO_PEERCRED` names the pid
//! that connected, but a pid is only a number: were the caller to hand its connection to
//! another process and exit, its pid could be reused by a process of another pod before the
//! caller's cgroup is read. So the server asks the kernel for a pidfd of the connecting process
//! (`SO_PEERPIDFD`, Linux 6.5+), which pins that very process: its pid is read from the pidfd,
//! its cgroup from `/proc`, and the pidfd is asked again afterwards: a process that exited in
//! between (its pid free for reuse) is refused. Where the kernel has no `SO_PEERPIDFD`, the
//! cgroup is read at accept time from the credentials' pid (the window is the accept's).

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::UnixStream,
};

use crate::transport::gather::Gathered;

use super::{
    caller::{self, cgroup_of},
    slots::{NoSlot, Place, Slot, Slots},
};

/// The process at the other end of a connection, as the kernel named it at accept time.
#[derive(Clone, Debug)]
pub struct Peer {
    pub pid: u32,
    pub uid: u32,
    /// Its cgroup v2 path, or why it could not be read.
    pub cgroup: Result<String, String>,
}

impl Peer {
    /// `None` when the connection carries no credentials.
    fn of(stream: &UnixStream, proc_root: &Path) -> Option<Self> {
        let cred = stream.peer_cred().ok()?;
        let uid = cred.uid();
        let Some(pidfd) = peer_pidfd(stream) else {
            let pid = cred.pid().unwrap_or_default() as u32;
            return Some(Self {
                pid,
                uid,
                cgroup: cgroup_of(proc_root, pid),
            });
        };
        let Some(pid) = pidfd_pid(&pidfd) else {
            return Some(Self {
                pid: cred.pid().unwrap_or_default() as u32,
                uid,
                cgroup: Err("the connecting process has exited".into()),
            });
        };
        let cgroup = cgroup_of(proc_root, pid).and_then(|c| {
            if pidfd_pid(&pidfd) == Some(pid) {
                Ok(c)
            } else {
                Err("the connecting process exited while it was identified".into())
            }
        });
        Some(Self { pid, uid, cgroup })
    }
}

/// The kernel's pidfd of the process that connected (`SO_PEERPIDFD`); `None` on kernels
/// without it.
fn peer_pidfd(stream: &UnixStream) -> Option<OwnedFd> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` and `len` are valid for writes of the sizes given; the socket fd is open.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERPIDFD,
            (&raw mut fd).cast(),
            &raw mut len,
        )
    };
    // SAFETY: on success the kernel installed a new descriptor we now own.
    (rc == 0 && fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The pid a pidfd refers to, from `/proc/self/fdinfo` (`Pid:`); `None` once the process has
/// exited (the kernel then shows -1) or when it cannot be read.
fn pidfd_pid(pidfd: &OwnedFd) -> Option<u32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).ok()?;
    let pid: i64 = info
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))?
        .trim()
        .parse()
        .ok()?;
    u32::try_from(pid).ok().filter(|p| *p > 0)
}

/// A connection with its peer identified at accept time (tonic's connect info: [`Peer`]).
pub struct PeerStream {
    /// Its writes gathered: a subscriber's stream of events is sent a burst at a time.
    io: Gathered<UnixStream>,
    peer: Option<Peer>,
    /// Its place among the connections the server takes at once, given back when it closes.
    _slot: Slot,
}

impl PeerStream {
    /// Identifies the peer of `io` and takes it a slot in its pod's share (`pod_roots` say
    /// what a pod is, [`caller::check`]), or in the share of callers outside pods. `Err`: that
    /// share, or the whole, is full; dropping `io` closes the connection.
    pub fn accept(
        io: UnixStream,
        proc_root: &Path,
        slots: &Arc<Slots>,
        pod_roots: &[String],
    ) -> Result<Self, (NoSlot, Option<Peer>)> {
        let peer = Peer::of(&io, proc_root);
        let place: Place = peer.as_ref().and_then(|p| {
            caller::check(p.pid, p.uid, p.cgroup.clone(), pod_roots, "")
                .ok()
                .map(|c| c.pod)
        });
        match slots.take(place) {
            Ok(slot) => Ok(Self {
                io: Gathered::new(io),
                peer,
                _slot: slot,
            }),
            Err(no) => Err((no, peer)),
        }
    }
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = Option<Peer>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_peer_is_this_process_with_its_own_cgroup() {
        let (a, _b) = UnixStream::pair().unwrap();
        let slots = Slots::new(1, 1, 1);
        let Ok(s) = PeerStream::accept(a, Path::new("/proc"), &slots, &[]) else {
            panic!("a slot is free");
        };
        let peer = s.peer.expect("a socket pair carries credentials");
        assert_eq!(peer.pid, std::process::id());
        assert_eq!(
            peer.cgroup,
            cgroup_of(Path::new("/proc"), std::process::id())
        );
    }
}
