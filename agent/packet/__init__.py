"""The packet path: frames from a pcap file or a live interface, TCP reassembly, RRPairs.

    pcapfile (pcap/pcapng records) or live (BPF socket filter, AF_PACKET socket)
      -> decode (link layer to TCP: a struct fast path, dpkt for everything else)
      -> flows (per-connection state, roles, limits) + reassembly (one direction's bytes)
      -> http_session (the HTTP/1.x stitcher, exchanges with their connection context)
pipeline puts decode, flows and sessions together; importer runs it over a file;
pcap_export writes RRPairs back as packets. Everything but pcapfile, importer and live
is sans-IO.
"""
