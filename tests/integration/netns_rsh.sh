#!/bin/sh
# Open MPI's rsh agent for hosts that are network namespaces (--mca plm_rsh_agent):
# called as `netns_rsh.sh HOST COMMAND...`, it runs COMMAND in HOST's namespace, found in
# NETNS_HOSTS ("10.0.0.2=ns2,..."), where ssh would log in to HOST.
host=$1
shift
for pair in $(echo "$NETNS_HOSTS" | tr ',' ' '); do
    if [ "${pair%%=*}" = "$host" ]; then
        exec ip netns exec "${pair#*=}" sh -c "$*"
    fi
done
echo "netns_rsh.sh: $host is not in NETNS_HOSTS" >&2
exit 255
