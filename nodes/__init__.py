"""ノード (node daemons): one module per node role and a shared runtime. Renders nothing."""
