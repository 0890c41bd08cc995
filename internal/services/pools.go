package services

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/vipd/vipd/internal/ipam"
)

// readPools returns the pools: nil without a ConfigMap; the last good ones
// when the ConfigMap is malformed (reported once, by the allocator).
func (c *Controller) readPools(ctx context.Context, leading bool) *ipam.Pools {
	if c.cmLister == nil {
		return nil
	}
	cm, err := c.cmLister.ConfigMaps(PoolsNamespace).Get(PoolsName)
	if err != nil {
		c.pools, c.poolsSeen = nil, ""
		return nil
	}
	seen := fmt.Sprint(cm.Data)
	if seen == c.poolsSeen {
		return c.pools
	}
	p, err := ipam.ParsePools(cm.Data)
	if err != nil {
		if leading {
			c.poster.Post(ctx, ref(cm, "ConfigMap"), corev1.EventTypeWarning, "InvalidPools",
				fmt.Sprintf("ConfigMap %s/%s is malformed, keeping the last good pools: %v", PoolsNamespace, PoolsName, err))
			c.poolsSeen = seen
		}
		return c.pools
	}
	c.pools, c.poolsSeen = p, seen
	c.log.Info("address pools loaded", "pools", describe(p))
	return p
}

func describe(p *ipam.Pools) string {
	var s []string
	if p.Global != nil {
		s = append(s, "global: "+p.Global.String())
	}
	for ns, pool := range p.Namespaces {
		s = append(s, ns+": "+pool.String())
	}
	sort.Strings(s)
	return strings.Join(s, "; ")
}
