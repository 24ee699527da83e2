"""What the tests share: loopback servers, free ports, real-binary helpers and the tiers a test belongs to."""
