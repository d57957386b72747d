"""What reaches the operating system's network: addresses, listening sockets, named services and
peer credentials."""
