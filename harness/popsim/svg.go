package popsim

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// svgPlot draws one chart as inline SVG: axes with ticks, shaded bands,
// polylines and a legend. Every number written is finite (a degenerate
// range is widened, a non-finite point skipped), so the markup never
// holds "NaN" or "Inf".
type svgPlot struct {
	w, h                   float64 // whole image, px
	left, right, top, bot  float64 // margins, px
	x0, x1, y0, y1         float64 // data ranges
	logX                   bool
	xLabel, yLabel, title  string
	b                      strings.Builder
	legend                 []legendItem
	yTickFmt, xTickFmt     func(float64) string
	noLegend, compactTicks bool
	legendLow              bool // legend at the bottom right rather than the top right
}

type legendItem struct{ label, color string }

// palette holds distinguishable line colours.
var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
	"#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}

func colorAt(i int) string { return palette[i%len(palette)] }

func newPlot(w, h float64, title, xLabel, yLabel string) *svgPlot {
	return &svgPlot{w: w, h: h, left: 58, right: 14, top: 24, bot: 40, title: title, xLabel: xLabel, yLabel: yLabel,
		x0: 0, x1: 1, y0: 0, y1: 1}
}

// setRange fixes the data ranges; a log axis must be positive.
func (p *svgPlot) setRange(x0, x1, y0, y1 float64) {
	fix := func(a, b, minSpan float64) (float64, float64) {
		if !finite(a) || !finite(b) {
			return 0, 1
		}
		if b-a < minSpan {
			b = a + minSpan
		}
		return a, b
	}
	if p.logX {
		x0 = max(x0, 1e-3)
		x1 = max(x1, x0)
		x0 = math.Pow(10, math.Floor(math.Log10(x0)))
		x1 = math.Pow(10, math.Ceil(math.Log10(x1)))
		if x1 <= x0 {
			x1 = x0 * 10
		}
	}
	p.x0, p.x1 = fix(x0, x1, 1e-9)
	p.y0, p.y1 = fix(y0, y1, 1e-9)
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

func (p *svgPlot) px(x float64) float64 {
	span := p.w - p.left - p.right
	if p.logX {
		x = max(x, p.x0)
		return p.left + span*(math.Log10(x)-math.Log10(p.x0))/(math.Log10(p.x1)-math.Log10(p.x0))
	}
	return p.left + span*(x-p.x0)/(p.x1-p.x0)
}

func (p *svgPlot) py(y float64) float64 {
	span := p.h - p.top - p.bot
	return p.top + span*(1-(y-p.y0)/(p.y1-p.y0))
}

// num formats a coordinate compactly; non-finite values become 0.
func num(x float64) string {
	if !finite(x) {
		x = 0
	}
	return strconv.FormatFloat(x, 'f', 1, 64)
}

func esc(s string) string { return html.EscapeString(s) }

// band shades [x0, x1] over the plot's height and labels it at the top.
// The label is placed on row (0, 1, 2, ...) so that overlapping bands
// stay readable.
func (p *svgPlot) band(x0, x1 float64, label, color string, row int) {
	a, b := p.px(max(x0, p.x0)), p.px(min(x1, p.x1))
	if b < a || !finite(a) || !finite(b) {
		return
	}
	fmt.Fprintf(&p.b, `<rect class="fault" x="%s" y="%s" width="%s" height="%s" fill="%s" fill-opacity="0.18"><title>%s</title></rect>`,
		num(a), num(p.top), num(max(b-a, 1)), num(p.h-p.top-p.bot), color, esc(label))
	if label != "" && !p.compactTicks {
		fmt.Fprintf(&p.b, `<text class="fault-label" x="%s" y="%s" font-size="10" fill="#444">%s</text>`,
			num(a+2), num(p.top+11+float64(row%4)*11), esc(label))
	}
}

// line draws a polyline of pts ([x, y]), clamped to the plot area.
func (p *svgPlot) line(pts [][2]float64, color, label string, width float64) {
	var sb strings.Builder
	n := 0
	for _, pt := range pts {
		x, y := pt[0], pt[1]
		if !finite(x) || !finite(y) || p.logX && x <= 0 {
			continue
		}
		x = min(max(x, p.x0), p.x1)
		y = min(max(y, p.y0), p.y1)
		if n > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(num(p.px(x)) + "," + num(p.py(y)))
		n++
	}
	if n == 0 {
		return
	}
	fmt.Fprintf(&p.b, `<polyline fill="none" stroke="%s" stroke-width="%s" points="%s"><title>%s</title></polyline>`,
		color, num(width), sb.String(), esc(label))
	if label != "" {
		p.legend = append(p.legend, legendItem{label, color})
	}
}

// ticks returns about n round values spanning [a, b].
func ticks(a, b float64, n int) []float64 {
	if !(b > a) || n < 1 {
		return []float64{a}
	}
	raw := (b - a) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := math.Ceil(a/step) * step; v <= b+step*1e-9; v += step {
		out = append(out, v)
	}
	return out
}

func fmtTick(v float64) string {
	switch av := math.Abs(v); {
	case av == 0:
		return "0"
	case av >= 1000 || av == math.Trunc(av):
		return strconv.FormatFloat(v, 'f', 0, 64)
	case av >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
}

// svg finishes the chart and returns its markup.
func (p *svgPlot) svg() string {
	var o strings.Builder
	fmt.Fprintf(&o, `<svg xmlns="http://www.w3.org/2000/svg" width="%s" height="%s" viewBox="0 0 %s %s" font-family="sans-serif">`,
		num(p.w), num(p.h), num(p.w), num(p.h))
	if p.title != "" {
		fmt.Fprintf(&o, `<text x="%s" y="15" font-size="13" font-weight="bold">%s</text>`, num(p.left), esc(p.title))
	}
	// Grid and ticks.
	xf, yf := p.xTickFmt, p.yTickFmt
	if xf == nil {
		xf = fmtTick
	}
	if yf == nil {
		yf = fmtTick
	}
	nt := 6
	if p.compactTicks {
		nt = 3
	}
	var xt []float64
	if p.logX {
		for v := p.x0; v <= p.x1*1.0001; v *= 10 {
			xt = append(xt, v)
		}
	} else {
		xt = ticks(p.x0, p.x1, nt)
	}
	for _, v := range xt {
		x := p.px(v)
		fmt.Fprintf(&o, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#ddd"/>`, num(x), num(p.top), num(x), num(p.h-p.bot))
		fmt.Fprintf(&o, `<text x="%s" y="%s" font-size="10" text-anchor="middle">%s</text>`, num(x), num(p.h-p.bot+12), esc(xf(v)))
	}
	for _, v := range ticks(p.y0, p.y1, max(nt-1, 2)) {
		y := p.py(v)
		fmt.Fprintf(&o, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#ddd"/>`, num(p.left), num(y), num(p.w-p.right), num(y))
		fmt.Fprintf(&o, `<text x="%s" y="%s" font-size="10" text-anchor="end">%s</text>`, num(p.left-4), num(y+3), esc(yf(v)))
	}
	o.WriteString(p.b.String())
	fmt.Fprintf(&o, `<rect x="%s" y="%s" width="%s" height="%s" fill="none" stroke="#888"/>`,
		num(p.left), num(p.top), num(p.w-p.left-p.right), num(p.h-p.top-p.bot))
	if p.xLabel != "" {
		fmt.Fprintf(&o, `<text x="%s" y="%s" font-size="11" text-anchor="middle">%s</text>`,
			num(p.left+(p.w-p.left-p.right)/2), num(p.h-6), esc(p.xLabel))
	}
	if p.yLabel != "" {
		fmt.Fprintf(&o, `<text x="12" y="%s" font-size="11" text-anchor="middle" transform="rotate(-90 12 %s)">%s</text>`,
			num(p.top+(p.h-p.top-p.bot)/2), num(p.top+(p.h-p.top-p.bot)/2), esc(p.yLabel))
	}
	if !p.noLegend {
		for i, it := range p.legend {
			y := p.top + 8 + float64(i)*14
			if p.legendLow {
				y = p.h - p.bot - 8 - float64(len(p.legend)-1-i)*14
			}
			x := p.w - p.right - 190
			fmt.Fprintf(&o, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="3"/>`, num(x), num(y), num(x+18), num(y), it.color)
			fmt.Fprintf(&o, `<text x="%s" y="%s" font-size="11">%s</text>`, num(x+22), num(y+4), esc(it.label))
		}
	}
	o.WriteString(`</svg>`)
	return o.String()
}
