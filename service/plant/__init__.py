"""Plant interfaces: historian input quality, the tag map, PI Web API bodies, OPC UA server and
bridge.
"""
