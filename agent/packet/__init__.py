"""The packet path: frames from a pcap file or a live interface, TCP reassembly, RRPairs.

decode (dpkt: link layer to TCP) -> flows (per-connection state, reassembly, bounded
memory) -> http_session (HTTP/1.x stitcher, RRPairs). pcapfile reads captures, live
captures from an interface through a BPF socket filter, pcap_export writes RRPairs back
as packets.
"""
