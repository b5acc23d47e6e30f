using ParetoQ.Runtime.Kernels;

namespace ParetoQ.Trainer;

/// <summary>
/// The float attention of <see cref="Ops{T}"/> spread over the GEMM's pool: the forward one item per query head, the
/// backward one item per KV head (its dk and dv gather the whole group, so no two items write the same row). Each item
/// runs the same generic per-head code the double reference runs.
/// </summary>
internal sealed unsafe class ParallelAttention : IParallelJob
{
    private float* _dout, _q, _k, _v, _probs, _output, _dq, _dk, _dv;
    private int _n, _heads, _kvHeads, _headDim, _window;
    private bool _backward;

    [ThreadStatic] private static ParallelAttention? t_job;

    public static void Forward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v, int n, int heads,
        int kvHeads, int headDim, int window, Span<float> output, Span<float> probs)
    {
        var job = t_job ??= new ParallelAttention();
        fixed (float* pq = q, pk = k, pv = v, po = output, pp = probs)
        {
            job._q = pq; job._k = pk; job._v = pv; job._output = po; job._probs = pp;
            (job._n, job._heads, job._kvHeads, job._headDim, job._window, job._backward) =
                (n, heads, kvHeads, headDim, window, false);
            Gemm.Shared.Run(job, heads);
        }
    }

    public static void Backward(ReadOnlySpan<float> dout, ReadOnlySpan<float> q, ReadOnlySpan<float> k,
        ReadOnlySpan<float> v, ReadOnlySpan<float> probs, int n, int heads, int kvHeads, int headDim, int window,
        Span<float> dq, Span<float> dk, Span<float> dv)
    {
        var job = t_job ??= new ParallelAttention();
        fixed (float* pd = dout, pq = q, pk = k, pv = v, pp = probs, pdq = dq, pdk = dk, pdv = dv)
        {
            job._dout = pd; job._q = pq; job._k = pk; job._v = pv; job._probs = pp;
            job._dq = pdq; job._dk = pdk; job._dv = pdv;
            (job._n, job._heads, job._kvHeads, job._headDim, job._window, job._backward) =
                (n, heads, kvHeads, headDim, window, true);
            Gemm.Shared.Run(job, kvHeads);
        }
    }

    public void Execute(int begin, int end, int worker)
    {
        int n = _n, qLength = n * _heads * _headDim, kvLength = n * _kvHeads * _headDim, probsLength = _heads * n * n;
        var q = new ReadOnlySpan<float>(_q, qLength);
        var k = new ReadOnlySpan<float>(_k, kvLength);
        var v = new ReadOnlySpan<float>(_v, kvLength);
        for (int item = begin; item < end; item++)
        {
            if (_backward)
                Ops<float>.AttentionBackwardKvHead(new ReadOnlySpan<float>(_dout, qLength), q, k, v,
                    new ReadOnlySpan<float>(_probs, probsLength), n, _heads, _kvHeads, _headDim, _window, item,
                    new Span<float>(_dq, qLength), new Span<float>(_dk, kvLength), new Span<float>(_dv, kvLength));
            else
                Ops<float>.AttentionHead(q, k, v, n, _heads, _kvHeads, _headDim, _window, item,
                    new Span<float>(_output, qLength), new Span<float>(_probs, probsLength));
        }
    }
}

/// <summary>The float cross-entropy of <see cref="Ops{T}"/> over the GEMM's pool, one item per scored position; the
/// losses are summed in position order afterwards, so the result does not depend on the thread count.</summary>
internal sealed unsafe class ParallelCrossEntropy : IParallelJob
{
    private float* _logits, _dlogits;
    private int* _targets;
    private int _vocab;
    private float _weight;
    private double[] _losses = [];

    [ThreadStatic] private static ParallelCrossEntropy? t_job;

    /// <summary>Σ of the scored rows' losses; dlogits rows get (softmax − onehot)·weight (masked rows stay as they
    /// are).</summary>
    public static double Run(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, int vocab, float weight,
        Span<float> dlogits)
    {
        var job = t_job ??= new ParallelCrossEntropy();
        if (job._losses.Length < targets.Length) job._losses = new double[targets.Length];
        fixed (float* pl = logits, pd = dlogits)
        fixed (int* pt = targets)
        {
            job._logits = pl; job._dlogits = pd; job._targets = pt;
            (job._vocab, job._weight) = (vocab, weight);
            Gemm.Shared.Run(job, targets.Length);
        }
        double sum = 0;
        for (int t = 0; t < targets.Length; t++) sum += job._losses[t];
        return sum;
    }

    public void Execute(int begin, int end, int worker)
    {
        for (int t = begin; t < end; t++)
        {
            int target = _targets[t];
            _losses[t] = target < 0 ? 0 : Ops<float>.CrossEntropyRow(
                new ReadOnlySpan<float>(_logits + (long)t * _vocab, _vocab), target, _weight,
                new Span<float>(_dlogits + (long)t * _vocab, _vocab));
        }
    }
}
