package ca

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// Service is Istio's IstioCertificateService (CreateCertificate) over an
// Authority. The caller's identity must already be in the call's context
// (NewContext), put there by the server's authentication interceptor.
type Service struct {
	securityv1alpha1.UnimplementedIstioCertificateServiceServer
	a   *Authority
	log *slog.Logger
}

// NewService returns the CA's gRPC service.
func NewService(a *Authority, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{a: a, log: logger}
}

// CreateCertificate signs the request's CSR for the caller's identity. It
// answers Unauthenticated without an identity, PermissionDenied when the
// CSR names another identity, InvalidArgument for a bad CSR.
func (s *Service) CreateCertificate(ctx context.Context, req *securityv1alpha1.IstioCertificateRequest) (*securityv1alpha1.IstioCertificateResponse, error) {
	id, ok := FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no verified token on this call")
	}
	svid, err := s.a.SignCSR([]byte(req.GetCsr()), id, time.Duration(req.GetValidityDuration())*time.Second)
	switch {
	case errors.Is(err, ErrWrongIdentity):
		s.log.Warn("refused CSR for another identity", "caller", id.SpiffeID(), "err", err)
		return nil, status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, ErrBadCSR):
		s.log.Warn("refused invalid CSR", "caller", id.SpiffeID(), "err", err)
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case err != nil:
		s.log.Error("signing CSR failed", "caller", id.SpiffeID(), "err", err)
		return nil, status.Error(codes.Internal, err.Error())
	}
	s.log.Info("issued workload certificate", "spiffe_id", id.SpiffeID(), "serial", svid.Leaf.SerialNumber.Text(16),
		"not_after", svid.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return &securityv1alpha1.IstioCertificateResponse{CertChain: svid.ChainPEM}, nil
}

var _ securityv1alpha1.IstioCertificateServiceServer = (*Service)(nil)
