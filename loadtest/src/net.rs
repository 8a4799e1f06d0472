//! Ports for the child processes a scenario starts. A port read off a socket that is then closed can be taken
//! by anyone before the child binds it. A [`Reserved`] port stays bound here, without listening (a connection
//! to it is refused, as to a backend that is down), so the OS hands it to nobody else; the child binds it too,
//! which `SO_REUSEADDR` on both sockets allows while this one does not listen (nginx, the interceptor and the
//! loadtest backend all set it). A child that reports the port it bound (the loadtest backend prints
//! `listening ADDR`) needs no reservation: it is given port 0.

use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

/// A loopback port bound by this process, not listening, for a child to bind. Keep it until the child is gone.
#[derive(Debug)]
pub struct Reserved {
    _socket: Socket,
    addr: SocketAddr,
}

impl Reserved {
    /// A free loopback port, chosen by the OS.
    pub fn new() -> anyhow::Result<Self> {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())?;
        let addr = socket.local_addr()?.as_socket().ok_or_else(|| anyhow::anyhow!("not an IP socket"))?;
        Ok(Self { _socket: socket, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Port 0 on loopback: a child given it binds a port the OS picks and reports it.
pub const ANY_LOOPBACK_PORT: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_port_refuses_connections_and_is_bound_by_a_reuseaddr_listener() {
        let reserved = Reserved::new().unwrap();
        assert!(std::net::TcpStream::connect(reserved.addr()).is_err(), "nothing listens yet");
        assert!(std::net::TcpListener::bind(reserved.addr()).is_ok(), "std sets SO_REUSEADDR, as the children do");
        let second = Reserved::new().unwrap();
        assert_ne!(second.addr(), reserved.addr(), "the OS hands a reserved port to nobody else");
    }
}
