<#
.SYNOPSIS
Install qwq-chat on Windows with a llama.cpp build for this machine's GPU, then run `qwq-chat doctor`.

.DESCRIPTION
`pip install llama-cpp-python` compiles llama.cpp for the CPU unless CMAKE_ARGS says otherwise, and
pip's wheel cache then keeps handing out that CPU build. This script detects the CUDA toolkit (nvcc on
PATH or under $env:CUDA_PATH), builds llama-cpp-python with -DGGML_CUDA=on without the cache, installs
qwq-chat, and lets the doctor confirm GPU offload. With an NVIDIA GPU but no CUDA toolkit, or no GPU,
it installs the CPU build and says so. Building needs Visual Studio's C++ tools (and CMake).

.EXAMPLE
powershell -ExecutionPolicy Bypass -File packaging\install.ps1 -DryRun
#>
[CmdletBinding()]
param(
    [switch]$DryRun,
    [ValidateSet("cpu", "cuda")][string]$Backend,
    [string]$Venv = "",
    [string]$From = "",
    [string]$Python = "python",
    [switch]$NoDoctor
)
$ErrorActionPreference = "Stop"
$LlamaReq = "llama-cpp-python>=0.3.36"

function Say([string]$Message) { Write-Host "==> $Message" }
function Warn([string]$Message) { Write-Warning $Message }

# Print a command, and run it unless -DryRun; a non-zero exit stops the script.
function Invoke-Step([string]$Exe, [string[]]$Arguments) {
    Write-Host ("+ " + $Exe + " " + ($Arguments -join " "))
    if (-not $DryRun) {
        & $Exe @Arguments
        if ($LASTEXITCODE -ne 0) { throw "'$Exe' failed with exit code $LASTEXITCODE" }
    }
}

function Find-Nvcc {
    $cmd = Get-Command nvcc -ErrorAction SilentlyContinue
    if ($cmd) { return $cmd.Source }
    if ($env:CUDA_PATH -and (Test-Path (Join-Path $env:CUDA_PATH "bin\nvcc.exe"))) {
        return (Join-Path $env:CUDA_PATH "bin\nvcc.exe")
    }
    return $null
}

# --- Python -----------------------------------------------------------------------------------
if (-not (Get-Command $Python -ErrorAction SilentlyContinue)) {
    Write-Host "install.ps1: '$Python' not found; install Python 3.11 or newer (python.org) or pass -Python PATH" -ForegroundColor Red
    exit 1
}
& $Python -c "import sys; sys.exit(sys.version_info < (3, 11))"
if ($LASTEXITCODE -ne 0) {
    Write-Host "install.ps1: qwq-chat needs Python 3.11 or newer; pass -Python PATH" -ForegroundColor Red
    exit 1
}

# --- what and where ---------------------------------------------------------------------------
if (-not $From) {
    $repo = Split-Path -Parent $PSScriptRoot
    $pyproject = Join-Path $repo "pyproject.toml"
    if ((Test-Path $pyproject) -and (Select-String -Path $pyproject -Pattern '^name = "qwq-chat"' -Quiet)) {
        $From = $repo
    } else {
        $From = "qwq-chat"
    }
}
if (-not $Venv) {
    if ($env:VIRTUAL_ENV) { $Venv = $env:VIRTUAL_ENV } else { $Venv = Join-Path $env:LOCALAPPDATA "qwq-chat\venv" }
}
$VenvPython = Join-Path $Venv "Scripts\python.exe"

# --- backend ----------------------------------------------------------------------------------
if (-not $Backend) {
    $nvcc = Find-Nvcc
    $smi = Get-Command nvidia-smi -ErrorAction SilentlyContinue
    if ($nvcc) {
        Say "CUDA toolkit found ($nvcc): building llama.cpp with CUDA"
        if (-not $smi) { Warn "nvidia-smi not found: the CUDA build runs only where an NVIDIA GPU is." }
        $Backend = "cuda"
    } elseif ($smi) {
        Warn "an NVIDIA GPU is present (nvidia-smi) but the CUDA toolkit (nvcc) is not installed,"
        Warn "so llama.cpp can only be built for the CPU. For GPU offload, install the CUDA toolkit"
        Warn "(https://developer.nvidia.com/cuda-downloads) and run this again."
        Say "falling back to the CPU build of llama.cpp"
        $Backend = "cpu"
    } else {
        Say "no GPU found: installing the CPU build of llama.cpp (a 32B model will be slow)"
        $Backend = "cpu"
    }
} else {
    Say "backend forced: $Backend"
}

Say "installing $From into $Venv"
if (-not (Test-Path $VenvPython)) { Invoke-Step $Python @("-m", "venv", $Venv) }
Invoke-Step $VenvPython @("-m", "pip", "install", "--quiet", "--upgrade", "pip")

if ($Backend -eq "cuda") {
    # Built first and without pip's cache: a cached CPU wheel of the same version would otherwise win.
    Say "building llama-cpp-python with CMAKE_ARGS=-DGGML_CUDA=on (takes several minutes)"
    Write-Host '+ $env:CMAKE_ARGS="-DGGML_CUDA=on"; $env:FORCE_CMAKE="1"'
    if (-not $DryRun) { $env:CMAKE_ARGS = "-DGGML_CUDA=on"; $env:FORCE_CMAKE = "1" }
    Invoke-Step $VenvPython @("-m", "pip", "install", "--force-reinstall", "--no-deps", "--no-cache-dir", "--no-binary", "llama-cpp-python", $LlamaReq)
    if (-not $DryRun) { Remove-Item Env:CMAKE_ARGS; Remove-Item Env:FORCE_CMAKE }
}
Invoke-Step $VenvPython @("-m", "pip", "install", $From)

$Exe = Join-Path $Venv "Scripts\qwq-chat.exe"
if (-not $env:VIRTUAL_ENV) {
    Say "add $(Join-Path $Venv 'Scripts') to PATH to run qwq-chat from any shell"
}
if (-not $NoDoctor) {
    Say "checking the install"
    Write-Host "+ $Exe doctor"
    if (-not $DryRun) {
        & $Exe doctor
        if ($LASTEXITCODE -ne 0) {
            Warn "qwq-chat doctor found a problem (see the 'fix:' lines above)."
            exit $LASTEXITCODE
        }
    }
}
Say "done: run qwq-chat"
