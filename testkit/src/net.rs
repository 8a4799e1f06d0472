//! Ports for things that start later. Binding port 0, reading the port and closing the socket leaves a window
//! in which any other test may take the port. A [`Reserved`] port stays bound (so the OS hands it to nobody
//! else) without listening (so a connection to it is refused, as to a backend that is down), until
//! [`Reserved::listen`] turns it into a listener. A program that binds with `SO_REUSEADDR` (Python's HTTP
//! servers do) can take the port over while it is reserved.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use socket2::{Domain, Socket, Type};

#[derive(Debug)]
pub struct Reserved {
    socket: Socket,
    addr: SocketAddr,
}

impl Reserved {
    /// A free port on 127.0.0.1.
    pub fn new() -> Self {
        Self::on(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
    }

    /// `addr` (port 0: any free port), reserved.
    pub fn on(addr: SocketAddr) -> Self {
        Self::try_on(addr).unwrap_or_else(|e| panic!("cannot reserve {addr}: {e}"))
    }

    /// `addr`, reserved, or why not (a listener still has it).
    pub fn try_on(addr: SocketAddr) -> std::io::Result<Self> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        let addr = socket.local_addr()?.as_socket().ok_or(std::io::ErrorKind::InvalidInput)?;
        Ok(Self { socket, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Starts listening on the reserved address.
    pub fn listen(self) -> tokio::net::TcpListener {
        self.socket.listen(1024).unwrap();
        self.socket.set_nonblocking(true).unwrap();
        tokio::net::TcpListener::from_std(self.socket.into()).unwrap()
    }
}

impl Default for Reserved {
    fn default() -> Self {
        Self::new()
    }
}
