package lab

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// The benchmarks' pictures (docs/img): drawn with gonum.org/v1/plot from a
// run's own samples, written only when the make target asks for them
// (VIPD_BENCH_IMG names the folder).

// ImageDir is where the benchmarks write their pictures ("": none).
func ImageDir() string { return os.Getenv("VIPD_BENCH_IMG") }

var (
	colorNodes = []color.Color{
		color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
		color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
		color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff},
		color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
	}
	colorFail = color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}
	colorGrey = color.RGBA{R: 0x99, G: 0x99, B: 0x99, A: 0xff}
)

// TimelineSVG draws, for one fault at faultAt, which node answered the
// client's probes (filled dots, a lane per node), which nodes had the VIP
// on their interface as sampled (rings just above the lane), and the probes
// that failed (red, on the lane "no answer"), from before to after the
// fault. caption goes under the title (say the date and the timings).
func TimelineSVG(path, title, caption string, r *Report, faultAt time.Time, nodes []string) error {
	lane := map[string]float64{}
	ticks := []plot.Tick{{Value: 0, Label: "no answer"}}
	for i, n := range nodes {
		lane[n] = float64(i + 1)
		ticks = append(ticks, plot.Tick{Value: float64(i + 1), Label: n})
	}
	p := plot.New()
	p.Title.Text = title + "\n" + caption
	p.X.Label.Text = "seconds from the fault"
	p.Y.Tick.Marker = plot.ConstantTicks(ticks)
	p.Y.Min, p.Y.Max = -0.5, float64(len(nodes))+1.6 // room for the legend
	p.Add(plotter.NewGrid())
	at := func(t time.Time) float64 { return t.Sub(faultAt).Seconds() }

	answered := map[string]plotter.XYs{}
	var failed plotter.XYs
	for _, pr := range r.Probes {
		if pr.Err != nil || lane[pr.Node] == 0 {
			failed = append(failed, plotter.XY{X: at(pr.At), Y: 0})
			continue
		}
		answered[pr.Node] = append(answered[pr.Node], plotter.XY{X: at(pr.At), Y: lane[pr.Node]})
	}
	held := map[string]plotter.XYs{}
	for _, s := range r.Samples {
		for _, n := range s.Owners {
			held[n] = append(held[n], plotter.XY{X: at(s.At), Y: lane[n] + 0.3})
		}
	}
	for i, n := range nodes {
		c := colorNodes[i%len(colorNodes)]
		if err := addScatter(p, held[n], c, draw.RingGlyph{}, 1.5, ""); err != nil {
			return err
		}
		if err := addScatter(p, answered[n], c, draw.CircleGlyph{}, 1.5, ""); err != nil {
			return err
		}
	}
	if err := addScatter(p, failed, colorFail, draw.CrossGlyph{}, 2, "probe failed"); err != nil {
		return err
	}
	fault, err := plotter.NewLine(plotter.XYs{{X: 0, Y: -0.5}, {X: 0, Y: float64(len(nodes)) + 0.6}})
	if err != nil {
		return err
	}
	fault.Color, fault.Dashes = colorFail, []vg.Length{vg.Points(3), vg.Points(3)}
	p.Add(fault)
	p.Legend.Add("fault", fault)
	p.Legend.Add("dot: answered the client; ring: VIP on the node (sampled)")
	p.Legend.Top, p.Legend.Left = true, true
	return save(p, path, 9*vg.Inch, 3.2*vg.Inch)
}

// Series is one line of a SeriesSVG: y against x. Peer: a system measured
// beside vipd (MetalLB), drawn grey.
type Series struct {
	Name string
	X, Y []float64
	Peer bool
}

// SeriesSVG draws lines with points, one per series (say which system
// each is), y against x on a log-scaled x axis when logX.
func SeriesSVG(path, title, caption, xLabel, yLabel string, logX bool, series []Series) error {
	p := plot.New()
	p.Title.Text = title + "\n" + caption
	p.X.Label.Text, p.Y.Label.Text = xLabel, yLabel
	if logX {
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	}
	p.Add(plotter.NewGrid())
	for i, s := range series {
		xys := make(plotter.XYs, len(s.X))
		for j := range s.X {
			xys[j] = plotter.XY{X: s.X[j], Y: s.Y[j]}
		}
		l, pts, err := plotter.NewLinePoints(xys)
		if err != nil {
			return err
		}
		c := colorNodes[i%len(colorNodes)]
		if s.Peer {
			c = colorGrey
		}
		l.Color, pts.Color = c, c
		p.Add(l, pts)
		p.Legend.Add(s.Name, l, pts)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Y.Min = 0
	return save(p, path, 6*vg.Inch, 4*vg.Inch)
}

func addScatter(p *plot.Plot, xys plotter.XYs, c color.Color, shape draw.GlyphDrawer, radius float64, legend string) error {
	if len(xys) == 0 {
		return nil
	}
	s, err := plotter.NewScatter(xys)
	if err != nil {
		return err
	}
	s.GlyphStyle = draw.GlyphStyle{Color: c, Shape: shape, Radius: vg.Points(radius)}
	p.Add(s)
	if legend != "" {
		p.Legend.Add(legend, s)
	}
	return nil
}

func save(p *plot.Plot, path string, w, h vg.Length) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := p.Save(w, h, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Caption is a picture's caption: what it shows, the run's date and the lab.
func Caption(what string, nodes int) string {
	return fmt.Sprintf("%s; %s, %d nodes in network namespaces, real kube-apiserver and etcd", what, time.Now().UTC().Format("2006-01-02"), nodes)
}
